"""``netwarden ask "QUESTION"``: a question in plain language, mapped to a hunt offline."""

from __future__ import annotations

import argparse
import json
import sys

from netwarden.commands.hunt import add_source_arguments, check_limit, open_db


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "ask",
        help='ask in plain language ("top talkers yesterday"); answered by a hunt, offline',
        description="Map a question to a hunt with a small fixed grammar (no model, no "
        "network) and print the query it ran and the answer. Run with --forms to list "
        "the questions it understands.",
    )
    p.add_argument("question", nargs="*", metavar="QUESTION")
    p.add_argument("--forms", action="store_true", help="list the questions understood")
    add_source_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from netwarden.hunt import ask, hunts
    from netwarden.hunt.output import emit

    if args.forms:
        print(ask.forms_help())
        return 0
    check_limit(args)
    question = " ".join(args.question).strip()
    db = open_db(args)
    try:
        now = db.newest() or time.time()
        try:
            q = ask.parse(question, now)
        except ask.NotUnderstood:
            print(ask.forms_help(), file=sys.stderr)
            raise
        results = hunts.run(db, q.hunt, q.window, args.limit, q.arg)
    finally:
        db.close()
    where = f"hunt {q.hunt}{' ' + q.arg if q.arg else ''} over {q.window.describe()}"
    if args.json:
        print(json.dumps({"type": "question", "question": question, "form": q.form,
                          "hunt": q.hunt, "arg": q.arg, "since": q.window.since,
                          "until": q.window.until}))  # fmt: skip
    else:
        from netwarden.hunt.output import wrap

        print("\n".join(wrap(f"Q: {question}") + wrap(f"-> {where} (form: {q.form})")) + "\n")
    emit(results, args.json, sys.stdout, show_query=True)
    return 0
