/*
 * mpmc.h: a C11 participant of a github.com/shmq/mpmc queue segment
 * (layout version 2.x), written from LAYOUT.md.
 *
 * Linux, 64-bit only. Link with nothing but libc. Build: cc -std=c11 -c mpmc.c
 *
 * A handle (mpmc_queue) is one participant: one open file description of the
 * segment, one entry of its participants table, one OFD lock. Its calls are
 * safe from many threads at once. Claim records: every call that claims
 * takes a record index of the handle's own entry from a private pool for
 * the duration of the call (see c/README.md), so no two threads ever use the
 * same record at once; at most 63 calls of one handle claim at the same
 * instant, and a 64th waits (sched_yield) for a record to come back.
 *
 * This participant does not create segments (a Go process does, or any
 * program following LAYOUT.md section 6), does not Clean, has no batch or
 * zero-copy calls, and does not implement redelivery: mpmc_open refuses a
 * segment whose header has the redeliver flag with MPMC_EREDELIVER.
 */
#ifndef MPMC_H
#define MPMC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Results. Every call returns MPMC_OK (0) or one of these (negative). */
enum {
	MPMC_OK = 0,
	MPMC_EFULL = -1,        /* try_enqueue: no free slot now */
	MPMC_EEMPTY = -2,       /* try_dequeue: nothing to take now */
	MPMC_ECLOSED = -3,      /* Shutdown (enqueue; dequeue once drained), or the handle is closing */
	MPMC_ETOOLARGE = -4,    /* message longer than the slot size */
	MPMC_ESHORTBUF = -5,    /* buffer shorter than the message at the head; it stays queued */
	MPMC_EBADSEG = -6,      /* not a valid segment, or a word the protocol cannot produce */
	MPMC_ETOOMANY = -7,     /* every participants-table entry is held */
	MPMC_EBUSY = -8,        /* open: a Clean held the table for longer than 2 s */
	MPMC_ETIMEDOUT = -9,    /* a blocking call's timeout ended */
	MPMC_ESYS = -10,        /* a system call failed: see mpmc_error.sys_errno / errno */
	MPMC_EINVAL = -11,      /* bad argument */
	MPMC_EREDELIVER = -12,  /* open: the segment asks for redelivery, not implemented here */
	MPMC_ENOENT = -13,      /* open: the segment was removed while joining */
	MPMC_ENOEVENTFD = -14   /* open: the segment signals eventfds; join it with them (mpmc_open_fd) */
};

/* The two sides of an eventfd-signalled queue, by what their waiters wait
 * for: producers wait for NOT_FULL, consumers for NOT_EMPTY. */
enum { MPMC_NOT_FULL = 0, MPMC_NOT_EMPTY = 1 };

typedef struct mpmc_queue mpmc_queue;

/* Why an open failed. */
typedef struct mpmc_error {
	int code;           /* one of the MPMC_E* values */
	int sys_errno;      /* errno for MPMC_ESYS, else 0 */
	char reason[256];   /* a sentence: what was wrong with the file */
} mpmc_error;

/* A snapshot of the shared positions and counters (LAYOUT.md section 3). */
typedef struct mpmc_stats {
	uint64_t capacity, slot_size;
	uint64_t enqueue_pos, dequeue_pos; /* without the asleep bits */
	int shutdown;
	uint64_t consumer_sleeps, producer_sleeps, consumer_wakes, producer_wakes;
	uint64_t recovered_writes, recovered_reads, skipped, participants_reclaimed, redelivered;
} mpmc_stats;

/* Opens and validates the segment at path (every check of LAYOUT.md section
 * 7), joins it and sweeps dead participants' claims. On failure returns a
 * code, fills *err (may be NULL) and leaves *out untouched. */
int mpmc_open(const char *path, mpmc_queue **out, mpmc_error *err);

/* Joins the segment that descriptor fd refers to (a memfd or a regular
 * file, e.g. received with SCM_RIGHTS, LAYOUT.md section 14) through an open
 * file description of its own: it reopens /proc/self/fd/<fd> with O_RDWR and
 * checks that this is the same inode, refuses a memfd not sealed with
 * F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL, then validates, joins and sweeps as
 * mpmc_open does. An eventfd-signalled segment (section 15) needs its two
 * eventfds, not_full_efd (the producers') and not_empty_efd (the
 * consumers'), in the hand-over's order; without them (-1) it is refused
 * with MPMC_ENOEVENTFD. fd and the eventfds stay the caller's, to close at
 * once: the handle keeps duplicates of the eventfds (made non-blocking) and
 * closes them in mpmc_close. Eventfds given for a segment that does not
 * signal them are ignored. */
int mpmc_open_fd(int fd, int not_full_efd, int not_empty_efd, mpmc_queue **out, mpmc_error *err);

/* Leaves the queue: marks the handle closing, wakes its sleeping calls
 * (they return MPMC_ECLOSED), waits until no call of the handle is in
 * flight, clears its entry, unmaps and closes. The handle is freed: no call
 * may start on it once mpmc_close has been called. */
int mpmc_close(mpmc_queue *q);

/* Never wait. try_enqueue: MPMC_OK, EFULL, ECLOSED, ETOOLARGE, EBADSEG.
 * try_dequeue: MPMC_OK with *n set, EEMPTY, ECLOSED (shut down and
 * drained), ESHORTBUF, EBADSEG. */
int mpmc_try_enqueue(mpmc_queue *q, const void *msg, size_t len);
int mpmc_try_dequeue(mpmc_queue *q, void *buf, size_t cap, size_t *n);

/* Wait while full / empty (spin, then sleep on the shared futex) for at
 * most timeout_ms milliseconds (-1: no limit); MPMC_ETIMEDOUT then. */
int mpmc_enqueue(mpmc_queue *q, const void *msg, size_t len, int timeout_ms);
int mpmc_dequeue(mpmc_queue *q, void *buf, size_t cap, size_t *n, int timeout_ms);

/* For every process: enqueues fail with ECLOSED, dequeues drain what is
 * left, then get ECLOSED; every sleeper wakes. Never undone. */
int mpmc_shutdown(mpmc_queue *q);

/* Event loops on an eventfd-signalled queue (LAYOUT.md section 15); side
 * is MPMC_NOT_EMPTY (consumers) or MPMC_NOT_FULL (producers). Every wake-up
 * of a side this handle makes (a claim that saw the side's asleep bit, a
 * recovery, Shutdown) writes that side's eventfd besides the futex.
 *
 * mpmc_eventfd: the side's eventfd, to register with epoll (EPOLLIN); -1
 * if the queue does not signal eventfds. It stays the handle's.
 *
 * mpmc_arm: announces a waiter (the asleep bit in the other side's
 * position) and re-checks. Returns 1 when the side can proceed now (do not
 * wait: drain with try_dequeue / try_enqueue), 0 when the caller should
 * wait for the eventfd for at most *poll_ns nanoseconds (short, from 50 us,
 * when a claim made before the announcement may hold the side up: its
 * claimant will not signal; else 2 s), or a negative code (MPMC_EINVAL
 * without eventfds, MPMC_ECLOSED once closing).
 *
 * mpmc_consume: reads (resets) the side's eventfd without waiting; nothing
 * to read is no error. After consuming, drain until EEMPTY (EFULL) before
 * waiting again: the eventfd is shared by every process of the queue. */
int mpmc_eventfd(const mpmc_queue *q, int side);
int mpmc_arm(mpmc_queue *q, int side, int64_t *poll_ns);
int mpmc_consume(mpmc_queue *q, int side);

void mpmc_stats_get(mpmc_queue *q, mpmc_stats *st);
uint64_t mpmc_capacity(const mpmc_queue *q);
uint64_t mpmc_slot_size(const mpmc_queue *q);
int mpmc_index(const mpmc_queue *q); /* this participant's entry, 0..127 */

/* Local policy knobs (LAYOUT.md section 2, "Go's local timing policy"). */
void mpmc_set_spin_ns(mpmc_queue *q, long ns);               /* default 20000 */
void mpmc_set_recovery_timeout_ms(mpmc_queue *q, long ms);   /* T, default 250 */
void mpmc_set_idle_slice_ms(mpmc_queue *q, long ms);         /* default 2000 */

const char *mpmc_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
