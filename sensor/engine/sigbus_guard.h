/* SIGBUS guard for mmap'd capture files.
 *
 * A file truncated while it is mapped makes every access past its new end raise SIGBUS,
 * which kills the process. While a mapping is registered here, a fault inside it maps a
 * zero page over the faulting page and returns: the access is retried and reads zeros,
 * and the slot's hit flag tells the reader to stop with a clear error. Faults anywhere
 * else go to the previous handler (e.g. Python's faulthandler) or the default action.
 *
 * mmap() is a plain system call; calling it from a synchronous fault handler is the
 * standard way to repair a mapping. The slots are written with the GIL held and read by
 * the handler only.
 */
#ifndef NW_SIGBUS_GUARD_H
#define NW_SIGBUS_GUARD_H

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NW_GUARD_SLOTS 64

static volatile uintptr_t nw_guard_lo[NW_GUARD_SLOTS];
static volatile uintptr_t nw_guard_hi[NW_GUARD_SLOTS];
static volatile sig_atomic_t nw_guard_hits[NW_GUARD_SLOTS];
static struct sigaction nw_guard_prev;
static uintptr_t nw_guard_page = 4096;

static void nw_guard_handler(int sig, siginfo_t *si, void *ctx) {
    uintptr_t a = (uintptr_t)si->si_addr;
    int i;
    for (i = 0; i < NW_GUARD_SLOTS; i++) {
        uintptr_t lo = nw_guard_lo[i], hi = nw_guard_hi[i];
        if (lo && a >= lo && a < hi) {
            void *page = (void *)(a & ~(nw_guard_page - 1));
            if (mmap(page, nw_guard_page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
                nw_guard_hits[i] = 1;
                return;
            }
            break;
        }
    }
    if ((nw_guard_prev.sa_flags & SA_SIGINFO) && nw_guard_prev.sa_sigaction != NULL) {
        nw_guard_prev.sa_sigaction(sig, si, ctx);
        return;
    }
    if (!(nw_guard_prev.sa_flags & SA_SIGINFO) && nw_guard_prev.sa_handler != SIG_DFL &&
        nw_guard_prev.sa_handler != SIG_IGN) {
        nw_guard_prev.sa_handler(sig);
        return;
    }
    signal(SIGBUS, SIG_DFL); /* the access is retried and kills the process, as without us */
}

/* Install the handler unless it is already the current one; 0 on success. */
static int nw_guard_install(void) {
    struct sigaction cur, sa;
    if (sigaction(SIGBUS, NULL, &cur) != 0)
        return -1;
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == nw_guard_handler)
        return 0;
    nw_guard_page = (uintptr_t)sysconf(_SC_PAGESIZE);
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = nw_guard_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, &nw_guard_prev) != 0)
        return -1;
    return 0;
}

/* Register [base, base + size); returns the slot, or -1 when every slot is taken. */
static int nw_guard_add(const void *base, size_t size) {
    int i;
    if (nw_guard_install() != 0)
        return -1;
    for (i = 0; i < NW_GUARD_SLOTS; i++) {
        if (nw_guard_lo[i] == 0) {
            nw_guard_hits[i] = 0;
            nw_guard_hi[i] = (uintptr_t)base + size;
            nw_guard_lo[i] = (uintptr_t)base;
            return i;
        }
    }
    return -1;
}

static int nw_guard_hit(int slot) {
    return slot >= 0 && slot < NW_GUARD_SLOTS && nw_guard_hits[slot];
}

static void nw_guard_remove(int slot) {
    if (slot >= 0 && slot < NW_GUARD_SLOTS) {
        nw_guard_lo[slot] = 0;
        nw_guard_hi[slot] = 0;
        nw_guard_hits[slot] = 0;
    }
}

#endif
