/*
 * mpmc.c: a C11 participant of a github.com/shmq/mpmc segment, from
 * LAYOUT.md (layout 2.0). Section numbers below are LAYOUT.md's.
 *
 * Every shared word is accessed through _Atomic lvalues on the mapping:
 * seq_cst where the table of section 1.1 asks for it, release for the
 * owner's stores, relaxed for the plain fields that may race (length,
 * flags). The segment is untrusted: geometry comes from a private copy of
 * the header, slots are indexed with the private mask, lengths are bounded
 * by the private slot size.
 */
#define _GNU_SOURCE
#include "mpmc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if ATOMIC_LLONG_LOCK_FREE != 2 || ATOMIC_INT_LOCK_FREE != 2
#error "mpmc needs lock-free 32- and 64-bit atomics"
#endif
_Static_assert(sizeof(_Atomic uint64_t) == 8 && _Alignof(_Atomic uint64_t) == 8, "atomic u64 layout");
_Static_assert(sizeof(_Atomic uint32_t) == 4 && _Alignof(_Atomic uint32_t) == 4, "atomic u32 layout");
_Static_assert(sizeof(void *) == 8, "64-bit only");

/* Section 2 and 3. */
#define MAGIC 0x434D504D514D4853ULL
#define MAGIC_SWAPPED 0x53484D514D504D43ULL
#define READY 0x59444552u
#define BOM 0x01020304u
#define HDR_SIZE 0x81000ULL
#define PT_OFF 0x1000ULL
#define ENTRY_SIZE 4096ULL
#define NPART 128
#define NREC 63
#define MAX_TOTAL ((1ULL << 40) - HDR_SIZE)

#define OFF_READY 0x58
#define OFF_SHUTDOWN 0x5C
#define OFF_ENQ 0x080
#define OFF_DEQ 0x100
#define OFF_NE_F 0x180 /* notEmpty: consumers sleep */
#define OFF_NE_W 0x188
#define OFF_NF_F 0x200 /* notFull: producers sleep */
#define OFF_NF_W 0x208
#define OFF_CNT 0x280

enum { C_CONS_SLEEPS, C_PROD_SLEEPS, C_CONS_WAKES, C_PROD_WAKES, C_REC_WRITES,
       C_REC_READS, C_SKIPPED, C_RECLAIMED, C_REDELIVERED };

#define POS ((1ULL << 63) - 1)
#define ASLEEP (1ULL << 63)
#define R_INUSE (1ULL << 63)
#define R_CLAIM (1ULL << 62)
#define R_IDLE R_INUSE
#define R_POSMASK ((1ULL << 46) - 1)
#define W_SKIPPED 1ULL
#define W_TAKEOVER 2ULL
#define SLOT_HDR 24
#define HF_REDELIVER 1u /* header flags (0x60) */
#define HF_EVENTFD 2u

enum { PRODUCERS = 0, CONSUMERS = 1 };

/* Internal results beyond the public ones. */
#define R_PENDING 100 /* a claimed, unpublished head: reported as EMPTY */

#define NS 1000000000LL
#define US 1000LL
#define MS 1000000LL

struct stall {
	bool valid;
	int side;
	uint64_t p, c;
	int64_t since;
};

struct mpmc_queue {
	int fd;
	unsigned char *base;
	uint64_t total, cap, mask, slot_size, stride;
	uint32_t hflags;
	int self;
	_Atomic uint64_t free_recs; /* bit k: record k of our entry is free */
	_Atomic int inflight;
	_Atomic int closing;
	_Atomic int sleepers[2]; /* threads of this handle asleep, per side */
	_Atomic long long spin_ns, recovery_ns, idle_ns;
	int efd[2];                      /* by side: the eventfd a kick writes, or -1 (section 15) */
	_Atomic long long arm_short[2];  /* mpmc_arm: the last short poll hint, 0 when none */
	_Atomic long long arm_since[2];  /* when the short hints began */
	atomic_flag stall_lock[2];
	struct stall stall[2]; /* per waiting side, under stall_lock */
	char crash[48], stop[48]; /* MPMC_TEST_HOOKS only: the steps to die / stop at */
};

/* ---- small helpers ---- */

static int64_t now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static int64_t now_real(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / NS), (long)(ns % NS) };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static void cpu_relax(void)
{
#if defined(__x86_64__)
	__asm__ __volatile__("pause" ::: "memory");
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

static _Atomic uint64_t *a64(const mpmc_queue *q, uint64_t off)
{
	return (_Atomic uint64_t *)(void *)(q->base + off);
}

static _Atomic uint32_t *a32(const mpmc_queue *q, uint64_t off)
{
	return (_Atomic uint32_t *)(void *)(q->base + off);
}

static uint64_t entry_off(int i) { return PT_OFF + ENTRY_SIZE * (uint64_t)i; }

static _Atomic uint64_t *record(const mpmc_queue *q, int i, int k)
{
	return a64(q, entry_off(i) + 64 + 64 * (uint64_t)k);
}

static uint64_t slot_off(const mpmc_queue *q, uint64_t p) { return HDR_SIZE + (p & q->mask) * q->stride; }
static _Atomic uint64_t *slot_seq(const mpmc_queue *q, uint64_t p) { return a64(q, slot_off(q, p)); }
static _Atomic uint32_t *slot_len(const mpmc_queue *q, uint64_t p) { return a32(q, slot_off(q, p) + 8); }
static _Atomic uint32_t *slot_flags(const mpmc_queue *q, uint64_t p) { return a32(q, slot_off(q, p) + 12); }
static _Atomic uint64_t *slot_origin(const mpmc_queue *q, uint64_t p) { return a64(q, slot_off(q, p) + 16); }
static unsigned char *slot_payload(const mpmc_queue *q, uint64_t p) { return q->base + slot_off(q, p) + SLOT_HDR; }

static uint64_t seq_word(uint64_t s, uint64_t f) { return (s << 2) | f; }

/* The sign-extended 62-bit difference seq(w) - p, without
 * implementation-defined shifts or conversions. */
static int64_t seq_diff(uint64_t w, uint64_t p)
{
	const uint64_t m62 = (1ULL << 62) - 1;
	uint64_t x = ((w >> 2) - p) & m62;
	if (x & (1ULL << 61))
		return -(int64_t)(((~x) + 1) & m62);
	return (int64_t)x;
}

static uint64_t record_for(int side, uint64_t p, uint64_t n)
{
	return R_INUSE | R_CLAIM | ((uint64_t)side << 61) | ((n - 1) << 46) | (p & R_POSMASK);
}

static bool covers(uint64_t r, int side, uint64_t qpos)
{
	return (r & R_CLAIM) != 0 && (int)((r >> 61) & 1) == side &&
	       ((qpos - r) & R_POSMASK) < ((r >> 46) & 0x7FFF) + 1;
}

static uint64_t ld(_Atomic uint64_t *a) { return atomic_load_explicit(a, memory_order_seq_cst); }
static void st_rel(_Atomic uint64_t *a, uint64_t v) { atomic_store_explicit(a, v, memory_order_release); }

/* A slot ahead of position p (section 8.3, "w is stale"): either the
 * position word has moved on since it was read (true; *w is reloaded), or
 * the segment is corrupt (false). */
static bool moved_on(_Atomic uint64_t *pos, uint64_t p, uint64_t *w)
{
	uint64_t w2 = ld(pos);
	if ((w2 & POS) == p)
		return false;
	*w = w2;
	return true;
}

static void count(mpmc_queue *q, int idx)
{
	atomic_fetch_add_explicit(a64(q, OFF_CNT + 8 * (uint64_t)idx), 1, memory_order_relaxed);
}

static long futex(_Atomic uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, (void *)uaddr, op, val, ts, NULL, 0);
}

/* A kick (section 9.3): bump the futex word, count, wake everyone (shared);
 * on an eventfd-signalled queue, then write 1 to the side's eventfd
 * (section 15). Neither blocks. */
static void kick(mpmc_queue *q, int waking_side)
{
	uint64_t f = waking_side == CONSUMERS ? OFF_NE_F : OFF_NF_F;
	atomic_fetch_add_explicit(a32(q, f), 1, memory_order_seq_cst);
	count(q, waking_side == CONSUMERS ? C_CONS_WAKES : C_PROD_WAKES);
	futex(a32(q, f), FUTEX_WAKE, INT_MAX, NULL);
	if (q->efd[waking_side] >= 0) {
		uint64_t one = 1;
		ssize_t r = write(q->efd[waking_side], &one, sizeof one);
		(void)r; /* EAGAIN only at a counter of 2^64-2: the side is signalled anyway */
	}
}

#ifdef MPMC_TEST_HOOKS
/* Test only: die by SIGKILL at the step named by MPMC_C_CRASH, or stop
 * (SIGSTOP, a live but stalled participant) at the one named by
 * MPMC_C_STOP. */
static void hook(mpmc_queue *q, const char *step)
{
	if (q->crash[0] && strcmp(q->crash, step) == 0) {
		kill(getpid(), SIGKILL);
		for (;;)
			pause();
	}
	if (q->stop[0] && strcmp(q->stop, step) == 0)
		raise(SIGSTOP);
}
#else
#define hook(q, step) ((void)0)
#endif

/* ---- calls in flight and records ---- */

static int enter(mpmc_queue *q)
{
	atomic_fetch_add(&q->inflight, 1);
	if (atomic_load(&q->closing)) {
		atomic_fetch_sub(&q->inflight, 1);
		return MPMC_ECLOSED;
	}
	return MPMC_OK;
}

static void leave_call(mpmc_queue *q) { atomic_fetch_sub(&q->inflight, 1); }

/* Takes a free record index of our entry for this call (section 4.3). */
static int take_record(mpmc_queue *q)
{
	for (;;) {
		uint64_t f = atomic_load_explicit(&q->free_recs, memory_order_relaxed);
		if (f == 0) {
			sched_yield();
			continue;
		}
		int k = __builtin_ctzll(f);
		if (atomic_compare_exchange_weak_explicit(&q->free_recs, &f, f & ~(1ULL << k),
							  memory_order_acquire, memory_order_relaxed))
			return k;
	}
}

static void give_record(mpmc_queue *q, int k)
{
	atomic_fetch_or_explicit(&q->free_recs, 1ULL << k, memory_order_release);
}

/* ---- liveness (section 4.4) ---- */

static int lock_entry(int fd, int i, int cmd, struct flock *fl)
{
	memset(fl, 0, sizeof *fl);
	fl->l_type = F_WRLCK;
	fl->l_whence = SEEK_SET;
	fl->l_start = (off_t)entry_off(i);
	fl->l_len = 1;
	fl->l_pid = 0;
	return fcntl(fd, cmd, fl);
}

static bool alive(mpmc_queue *q, int j)
{
	struct flock fl;
	if (j == q->self)
		return true;
	if (lock_entry(q->fd, j, F_OFD_GETLK, &fl) != 0)
		return true; /* never take over what may be alive */
	return fl.l_type != F_UNLCK;
}

/* ---- recovery (section 10) ---- */

/* Precondition: the caller loaded the position word showing p claimed
 * before calling, and c is the slot word it observed. Returns true if this
 * call moved the slot. */
static bool recover_claim(mpmc_queue *q, int side, uint64_t p, uint64_t c)
{
	for (int j = 0; j < NPART; j++) {
		for (int k = 0; k < NREC; k++) {
			uint64_t r = ld(record(q, j, k));
			if (covers(r, side, p)) {
				if (alive(q, j))
					return false;
				break; /* a dead entry's records prove nothing */
			}
		}
	}
	_Atomic uint64_t *s = slot_seq(q, p);
	uint64_t want = c;
	if (side == PRODUCERS) {
		if (atomic_compare_exchange_strong(s, &want, seq_word(p + 1, W_SKIPPED))) { /* R1 */
			count(q, C_REC_WRITES);
			kick(q, CONSUMERS);
			return true;
		}
		return false;
	}
	/* R2. Redelivery (R3) is never needed: mpmc_open refuses segments
	 * with the redeliver flag. */
	if (atomic_compare_exchange_strong(s, &want, seq_word(p + q->cap, 0))) {
		count(q, (c & W_SKIPPED) ? C_SKIPPED : C_REC_READS);
		kick(q, PRODUCERS);
		return true;
	}
	return false;
}

/* heldUpBy (section 10.1): the claim holding `side` up, if any. */
static bool held_up(mpmc_queue *q, int side, int *cside, uint64_t *cp, uint64_t *cc)
{
	if (side == CONSUMERS) {
		uint64_t d = ld(a64(q, OFF_DEQ)) & POS;
		uint64_t c = ld(slot_seq(q, d));
		if (c == seq_word(d, 0) && (ld(a64(q, OFF_ENQ)) & POS) > d) {
			*cside = PRODUCERS, *cp = d, *cc = c;
			return true;
		}
		return false;
	}
	uint64_t e = ld(a64(q, OFF_ENQ)) & POS;
	if (e < q->cap)
		return false;
	uint64_t p = e - q->cap;
	uint64_t c = ld(slot_seq(q, e));
	if (c == seq_word(p, 0)) {
		*cside = PRODUCERS, *cp = p, *cc = c;
		return true;
	}
	if ((c >> 2) == ((p + 1) & ((1ULL << 62) - 1)) && (ld(a64(q, OFF_DEQ)) & POS) > p) {
		*cside = CONSUMERS, *cp = p, *cc = c;
		return true;
	}
	return false;
}

/* checkStall (section 10.2). Returns true if it recovered a claim. */
static bool stall_check(mpmc_queue *q, int side)
{
	int cs;
	uint64_t p, c;
	if (!held_up(q, side, &cs, &p, &c))
		return false;
	if (atomic_flag_test_and_set_explicit(&q->stall_lock[side], memory_order_acquire))
		return false; /* another thread of this handle is checking */
	struct stall *st = &q->stall[side];
	int64_t now = now_mono();
	bool attempt = false;
	if (!st->valid || st->side != cs || st->p != p || st->c != c) {
		st->valid = true, st->side = cs, st->p = p, st->c = c, st->since = now;
	} else if (now - st->since >= atomic_load_explicit(&q->recovery_ns, memory_order_relaxed)) {
		st->since = now;
		attempt = true;
	}
	atomic_flag_clear_explicit(&q->stall_lock[side], memory_order_release);
	return attempt && recover_claim(q, cs, p, c);
}

/* The sweep (section 10.5). */
static void sweep(mpmc_queue *q)
{
	uint64_t e = ld(a64(q, OFF_ENQ)) & POS;
	uint64_t d = ld(a64(q, OFF_DEQ)) & POS;
	uint64_t back = d < q->cap ? d : q->cap;
	for (uint64_t x = d - back; x < d; x++) {
		uint64_t c = ld(slot_seq(q, x));
		if ((c >> 2) == ((x + 1) & ((1ULL << 62) - 1)))
			recover_claim(q, CONSUMERS, x, c);
	}
	for (uint64_t x = d; x < e && x - d < q->cap; x++) {
		uint64_t c = ld(slot_seq(q, x));
		if (c == seq_word(x, 0))
			recover_claim(q, PRODUCERS, x, c);
	}
}

/* ---- enqueue and dequeue (section 8) ---- */

/* enqueue1 (section 8.3) with record k. */
static int enq1(mpmc_queue *q, int k, const void *msg, size_t len)
{
	_Atomic uint64_t *enq = a64(q, OFF_ENQ);
	_Atomic uint64_t *rec = record(q, q->self, k);
	if (atomic_load(a32(q, OFF_SHUTDOWN)) != 0)
		return MPMC_ECLOSED;
	uint64_t w = ld(enq);
	for (;;) {
		uint64_t p = w & POS;
		if (p > POS - 65536)
			return MPMC_EBADSEG; /* a position no queue reaches */
		_Atomic uint64_t *s = slot_seq(q, p);
		int64_t d = seq_diff(ld(s), p);
		if (d < 0)
			return MPMC_EFULL;
		if (d > 0) {
			if (!moved_on(enq, p, &w))
				return MPMC_EBADSEG;
			continue;
		}
		st_rel(rec, record_for(PRODUCERS, p, 1)); /* E1 */
		if (!atomic_compare_exchange_strong(enq, &w, p + 1)) { /* E2; w reloaded */
			st_rel(rec, R_IDLE);
			continue;
		}
		if (w & ASLEEP)
			kick(q, CONSUMERS); /* E3 */
		hook(q, "enqueue-claimed");
		if (atomic_load(a32(q, OFF_SHUTDOWN)) != 0) { /* E4 */
			st_rel(s, seq_word(p + 1, W_SKIPPED));
			st_rel(rec, R_IDLE);
			return MPMC_ECLOSED;
		}
		if (len)
			memcpy(slot_payload(q, p), msg, len); /* E5 */
		atomic_store_explicit(slot_len(q, p), (uint32_t)len, memory_order_relaxed);
		atomic_store_explicit(slot_flags(q, p), 0, memory_order_relaxed);
		atomic_store_explicit(slot_origin(q, p), p, memory_order_relaxed);
		hook(q, "enqueue-before-publish");
		st_rel(s, seq_word(p + 1, 0)); /* E6 */
		st_rel(rec, R_IDLE);           /* E7 */
		return MPMC_OK;
	}
}

/* emptyAt (section 8.6). */
static int nothing_at_head(mpmc_queue *q, uint64_t p, uint64_t c, uint32_t shut)
{
	if (c == seq_word(p, 0) && (ld(a64(q, OFF_ENQ)) & POS) > p)
		return R_PENDING;
	return shut ? MPMC_ECLOSED : MPMC_EEMPTY;
}

/* dequeue1 (section 8.5) with record k. */
static int deq1(mpmc_queue *q, int k, void *buf, size_t blen, size_t *n)
{
	_Atomic uint64_t *deq = a64(q, OFF_DEQ);
	_Atomic uint64_t *rec = record(q, q->self, k);
	uint32_t shut = atomic_load(a32(q, OFF_SHUTDOWN)); /* before the position */
	uint64_t w = ld(deq);
	for (;;) {
		uint64_t p = w & POS;
		if (p > POS - 65536)
			return MPMC_EBADSEG;
		_Atomic uint64_t *s = slot_seq(q, p);
		uint64_t c = ld(s);
		int64_t d = seq_diff(c, p + 1);
		if (d < 0)
			return nothing_at_head(q, p, c, shut);
		if (d > 0) {
			if (!moved_on(deq, p, &w))
				return MPMC_EBADSEG;
			continue;
		}
		if (!(c & W_SKIPPED)) {
			uint32_t l = atomic_load_explicit(slot_len(q, p), memory_order_relaxed);
			if (l <= q->slot_size && l > blen) {
				if (ld(s) == c)
					return MPMC_ESHORTBUF; /* the message stays queued */
				continue;
			}
		}
		st_rel(rec, record_for(CONSUMERS, p, 1)); /* D1 */
		if (!atomic_compare_exchange_strong(deq, &w, p + 1)) { /* D2 */
			st_rel(rec, R_IDLE);
			continue;
		}
		if (w & ASLEEP)
			kick(q, PRODUCERS); /* D3 */
		hook(q, "dequeue-claimed");
		int err = MPMC_OK;
		size_t got = 0;
		if (!(c & W_SKIPPED)) { /* D4 */
			if (ld(s) & W_TAKEOVER) {
				err = MPMC_EBADSEG;
			} else {
				uint32_t l = atomic_load_explicit(slot_len(q, p), memory_order_relaxed);
				if (l > q->slot_size || l > blen)
					err = MPMC_EBADSEG;
				else if (l) {
					memcpy(buf, slot_payload(q, p), l);
					got = l;
				}
			}
		}
		hook(q, "dequeue-before-release");
		st_rel(s, seq_word(p + q->cap, 0)); /* D5 */
		st_rel(rec, R_IDLE);                /* D6 */
		if (!(c & W_SKIPPED)) {
			*n = got;
			return err;
		}
		count(q, C_SKIPPED);
		shut = atomic_load(a32(q, OFF_SHUTDOWN));
		w = ld(deq);
	}
}

/* One attempt of an operation, with a stall check on FULL / PENDING (and a
 * retry if it recovered), as Go's non-blocking calls do. */
struct op {
	int side; /* the side that waits: PRODUCERS for enqueue */
	int k;
	const void *msg;
	size_t len;
	void *buf;
	size_t blen;
	size_t *n;
};

static int attempt(mpmc_queue *q, struct op *o)
{
	if (o->side == PRODUCERS)
		return enq1(q, o->k, o->msg, o->len);
	return deq1(q, o->k, o->buf, o->blen, o->n);
}

static bool blocked(int rc) { return rc == MPMC_EFULL || rc == MPMC_EEMPTY || rc == R_PENDING; }

static int try_op(mpmc_queue *q, struct op *o)
{
	int rc = attempt(q, o);
	if (blocked(rc) && stall_check(q, o->side))
		rc = attempt(q, o);
	return rc;
}

/* Whether a sleeper stops waiting after an attempt that returned *rc: the
 * call went through or failed, or the handle is closing (then *rc becomes
 * MPMC_ECLOSED). */
static bool done_waiting(mpmc_queue *q, int *rc)
{
	if (!blocked(*rc))
		return true;
	if (atomic_load(&q->closing)) {
		*rc = MPMC_ECLOSED;
		return true;
	}
	return false;
}

static int public_rc(int rc) { return rc == R_PENDING ? MPMC_EEMPTY : rc; }

/* Waiting (section 9): spin, then sleep with the futex protocol. */
static int wait_op(mpmc_queue *q, struct op *o, int timeout_ms)
{
	int64_t start = now_mono();
	int64_t deadline = timeout_ms < 0 ? -1 : start + (int64_t)timeout_ms * MS;
	int rc = try_op(q, o);
	if (!blocked(rc))
		return rc;

	int64_t spin = atomic_load_explicit(&q->spin_ns, memory_order_relaxed);
	for (unsigned i = 1; now_mono() - start < spin; i++) {
		if (atomic_load(&q->closing))
			return MPMC_ECLOSED;
		cpu_relax();
		rc = (i % 16 == 0) ? try_op(q, o) : attempt(q, o);
		if (!blocked(rc))
			return rc;
	}

	const int side = o->side;
	_Atomic uint32_t *F = a32(q, side == CONSUMERS ? OFF_NE_F : OFF_NF_F);
	_Atomic uint64_t *W = a64(q, (side == CONSUMERS ? OFF_NE_W : OFF_NF_W) + 8 * (uint64_t)(q->self / 64));
	_Atomic uint64_t *other = a64(q, side == CONSUMERS ? OFF_ENQ : OFF_DEQ);
	const uint64_t bit = 1ULL << (q->self % 64);
	const int64_t T = atomic_load_explicit(&q->recovery_ns, memory_order_relaxed);

	atomic_fetch_add(&q->sleepers[side], 1);
	atomic_fetch_or(W, bit); /* informational */
	int64_t shortns = 0, since = 0;
	for (;;) {
		rc = try_op(q, o);
		if (done_waiting(q, &rc))
			break;
		int64_t now = now_mono();
		if (deadline >= 0 && now >= deadline) {
			rc = MPMC_ETIMEDOUT;
			break;
		}
		uint32_t v = atomic_load(F);                          /* 1. sample first */
		uint64_t ob = atomic_fetch_or(other, ASLEEP) & POS;   /* 2. S1 */
		rc = attempt(q, o);
		if (done_waiting(q, &rc))
			break;
		int64_t slice = atomic_load_explicit(&q->idle_ns, memory_order_relaxed);
		int cs;
		uint64_t cp, cc;
		bool held = held_up(q, side, &cs, &cp, &cc);
		bool before;
		if (side == CONSUMERS) {
			before = ob > (ld(a64(q, OFF_DEQ)) & POS);
		} else {
			uint64_t e = ld(a64(q, OFF_ENQ)) & POS;
			before = e >= q->cap && ob > e - q->cap;
		}
		if (held || before) {
			now = now_mono();
			if (shortns == 0) {
				shortns = 50 * US;
				since = now;
			} else if (now - since < T) {
				shortns = 2 * shortns < 2 * MS ? 2 * shortns : 2 * MS;
			} else {
				shortns = 2 * shortns < 100 * MS ? 2 * shortns : 100 * MS;
			}
			slice = shortns;
			if (held) {
				int64_t cap = T / 2 > MS ? T / 2 : MS;
				if (slice > cap)
					slice = cap;
			}
		} else {
			shortns = 0;
		}
		if (deadline >= 0) {
			int64_t left = deadline - now_mono();
			if (left < slice)
				slice = left > 0 ? left : 1;
		}
		count(q, side == CONSUMERS ? C_CONS_SLEEPS : C_PROD_SLEEPS);
		struct timespec ts = { (time_t)(slice / NS), (long)(slice % NS) };
		futex(F, FUTEX_WAIT, v, &ts); /* 3. any return: look again */
	}
	if (atomic_fetch_sub(&q->sleepers[side], 1) == 1)
		atomic_fetch_and(W, ~bit); /* 4. withdraw */
	return rc;
}

/* run_op makes one call of the four below: it takes a record for o (its
 * side and message or buffer set) and tries it once, or waits for it up to
 * timeout_ms when wait. */
static int run_op(mpmc_queue *q, struct op *o, bool wait, int timeout_ms)
{
	int rc = enter(q);
	if (rc)
		return rc;
	o->k = take_record(q);
	rc = wait ? wait_op(q, o, timeout_ms) : try_op(q, o);
	give_record(q, o->k);
	leave_call(q);
	return public_rc(rc);
}

int mpmc_try_enqueue(mpmc_queue *q, const void *msg, size_t len)
{
	if (!q || (!msg && len))
		return MPMC_EINVAL;
	if (len > q->slot_size)
		return MPMC_ETOOLARGE;
	struct op o = { .side = PRODUCERS, .msg = msg, .len = len };
	return run_op(q, &o, false, 0);
}

int mpmc_enqueue(mpmc_queue *q, const void *msg, size_t len, int timeout_ms)
{
	if (!q || (!msg && len))
		return MPMC_EINVAL;
	if (len > q->slot_size)
		return MPMC_ETOOLARGE;
	struct op o = { .side = PRODUCERS, .msg = msg, .len = len };
	return run_op(q, &o, true, timeout_ms);
}

int mpmc_try_dequeue(mpmc_queue *q, void *buf, size_t cap, size_t *n)
{
	size_t dummy;
	if (!q || (!buf && cap))
		return MPMC_EINVAL;
	struct op o = { .side = CONSUMERS, .buf = buf, .blen = cap, .n = n ? n : &dummy };
	return run_op(q, &o, false, 0);
}

int mpmc_dequeue(mpmc_queue *q, void *buf, size_t cap, size_t *n, int timeout_ms)
{
	size_t dummy;
	if (!q || (!buf && cap))
		return MPMC_EINVAL;
	struct op o = { .side = CONSUMERS, .buf = buf, .blen = cap, .n = n ? n : &dummy };
	return run_op(q, &o, true, timeout_ms);
}

int mpmc_shutdown(mpmc_queue *q)
{
	if (!q)
		return MPMC_EINVAL;
	int rc = enter(q);
	if (rc)
		return rc;
	atomic_store(a32(q, OFF_SHUTDOWN), 1); /* section 11 */
	kick(q, CONSUMERS);
	kick(q, PRODUCERS);
	leave_call(q);
	return MPMC_OK;
}

/* ---- eventfd signalling (section 15) ---- */

/* Can side s proceed now: the head published (consumers), the tail free
 * (producers), or Shutdown. */
static bool side_ready(mpmc_queue *q, int side)
{
	if (atomic_load(a32(q, OFF_SHUTDOWN)) != 0)
		return true;
	if (side == CONSUMERS) {
		uint64_t d = ld(a64(q, OFF_DEQ)) & POS;
		return seq_diff(ld(slot_seq(q, d)), d) == 1;
	}
	uint64_t e = ld(a64(q, OFF_ENQ)) & POS;
	return seq_diff(ld(slot_seq(q, e)), e) == 0;
}

int mpmc_eventfd(const mpmc_queue *q, int side)
{
	if (!q || (side != MPMC_NOT_FULL && side != MPMC_NOT_EMPTY))
		return -1;
	return q->efd[side];
}

int mpmc_arm(mpmc_queue *q, int side, int64_t *poll_ns)
{
	if (!q || !poll_ns || (side != MPMC_NOT_FULL && side != MPMC_NOT_EMPTY) || q->efd[side] < 0)
		return MPMC_EINVAL;
	int rc = enter(q);
	if (rc)
		return rc;
	_Atomic uint64_t *other = a64(q, side == CONSUMERS ? OFF_ENQ : OFF_DEQ);
	bool ready = side_ready(q, side);
	bool before = false, held = false;
	if (!ready) {
		uint64_t o = atomic_fetch_or(other, ASLEEP) & POS; /* S1 */
		ready = side_ready(q, side);                        /* re-check */
		if (!ready) {
			int cs;
			uint64_t cp, cc;
			held = held_up(q, side, &cs, &cp, &cc);
			if (side == CONSUMERS) {
				before = o > (ld(a64(q, OFF_DEQ)) & POS);
			} else {
				uint64_t e = ld(a64(q, OFF_ENQ)) & POS;
				before = e >= q->cap && o > e - q->cap;
			}
		}
	}
	if (ready || !(held || before)) {
		atomic_store(&q->arm_short[side], 0);
		*poll_ns = ready ? 0 : atomic_load_explicit(&q->idle_ns, memory_order_relaxed);
		leave_call(q);
		return ready ? 1 : 0;
	}
	/* No wake-up can be counted on: a short slice (section 9.2). */
	int64_t prev = atomic_load(&q->arm_short[side]), next, now = now_mono();
	if (prev == 0) {
		next = 50 * US;
		atomic_store(&q->arm_since[side], now);
	} else if (now - atomic_load(&q->arm_since[side]) < atomic_load_explicit(&q->recovery_ns, memory_order_relaxed)) {
		next = 2 * prev < 2 * MS ? 2 * prev : 2 * MS;
	} else {
		next = 2 * prev < 100 * MS ? 2 * prev : 100 * MS;
	}
	atomic_store(&q->arm_short[side], next);
	*poll_ns = next;
	leave_call(q);
	return 0;
}

int mpmc_consume(mpmc_queue *q, int side)
{
	if (!q || (side != MPMC_NOT_FULL && side != MPMC_NOT_EMPTY) || q->efd[side] < 0)
		return MPMC_EINVAL;
	int rc = enter(q);
	if (rc)
		return rc;
	uint64_t v;
	ssize_t r;
	while ((r = read(q->efd[side], &v, sizeof v)) < 0 && errno == EINTR) {
	}
	rc = (r < 0 && errno != EAGAIN) ? MPMC_ESYS : MPMC_OK;
	leave_call(q);
	return rc;
}

void mpmc_stats_get(mpmc_queue *q, mpmc_stats *st)
{
	memset(st, 0, sizeof *st);
	st->capacity = q->cap;
	st->slot_size = q->slot_size;
	st->enqueue_pos = ld(a64(q, OFF_ENQ)) & POS;
	st->dequeue_pos = ld(a64(q, OFF_DEQ)) & POS;
	st->shutdown = atomic_load(a32(q, OFF_SHUTDOWN)) != 0;
	uint64_t c[9];
	for (int i = 0; i < 9; i++)
		c[i] = atomic_load_explicit(a64(q, OFF_CNT + 8 * (uint64_t)i), memory_order_relaxed);
	st->consumer_sleeps = c[C_CONS_SLEEPS];
	st->producer_sleeps = c[C_PROD_SLEEPS];
	st->consumer_wakes = c[C_CONS_WAKES];
	st->producer_wakes = c[C_PROD_WAKES];
	st->recovered_writes = c[C_REC_WRITES];
	st->recovered_reads = c[C_REC_READS];
	st->skipped = c[C_SKIPPED];
	st->participants_reclaimed = c[C_RECLAIMED];
	st->redelivered = c[C_REDELIVERED];
}

uint64_t mpmc_capacity(const mpmc_queue *q) { return q->cap; }
uint64_t mpmc_slot_size(const mpmc_queue *q) { return q->slot_size; }
int mpmc_index(const mpmc_queue *q) { return q->self; }
void mpmc_set_spin_ns(mpmc_queue *q, long ns) { atomic_store(&q->spin_ns, ns < 0 ? 0 : ns); }
void mpmc_set_recovery_timeout_ms(mpmc_queue *q, long ms) { atomic_store(&q->recovery_ns, (long long)(ms < 0 ? 0 : ms) * MS); }
void mpmc_set_idle_slice_ms(mpmc_queue *q, long ms) { atomic_store(&q->idle_ns, (long long)(ms < 1 ? 1 : ms) * MS); }

const char *mpmc_strerror(int code)
{
	switch (code) {
	case MPMC_OK: return "ok";
	case MPMC_EFULL: return "queue full";
	case MPMC_EEMPTY: return "queue empty";
	case MPMC_ECLOSED: return "queue closed";
	case MPMC_ETOOLARGE: return "message too large";
	case MPMC_ESHORTBUF: return "buffer too short for the message";
	case MPMC_EBADSEG: return "bad segment";
	case MPMC_ETOOMANY: return "too many participants";
	case MPMC_EBUSY: return "busy";
	case MPMC_ETIMEDOUT: return "timed out";
	case MPMC_ESYS: return "system call failed";
	case MPMC_EINVAL: return "invalid argument";
	case MPMC_EREDELIVER: return "redelivery not supported";
	case MPMC_ENOENT: return "segment removed";
	case MPMC_ENOEVENTFD: return "segment signals eventfds: join it with them";
	}
	return "unknown error";
}

/* ---- open, validate, join, leave (sections 4 and 7) ---- */

static int fail(mpmc_error *err, int code, int e, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		err->code = code;
		err->sys_errno = e;
		va_start(ap, fmt);
		vsnprintf(err->reason, sizeof err->reason, fmt, ap);
		va_end(ap);
	}
	if (code == MPMC_ESYS)
		errno = e;
	return code;
}

static uint64_t rd64(const unsigned char *h, size_t off)
{
	uint64_t v;
	memcpy(&v, h + off, 8);
	return v;
}

static uint32_t rd32(const unsigned char *h, size_t off)
{
	uint32_t v;
	memcpy(&v, h + off, 4);
	return v;
}

static uint16_t rd16(const unsigned char *h, size_t off)
{
	uint16_t v;
	memcpy(&v, h + off, 2);
	return v;
}

/* Field 22 of /proc/self/stat, 0 if unreadable. */
static uint64_t start_ticks(void)
{
	char b[1024];
	int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, b, sizeof b - 1);
	close(fd);
	if (n <= 0)
		return 0;
	b[n] = 0;
	char *s = strrchr(b, ')');
	if (!s)
		return 0;
	s++;
	/* fields 3.. follow; field 22 is the 20th of them */
	for (int f = 3; f < 22; f++) {
		while (*s == ' ')
			s++;
		while (*s && *s != ' ')
			s++;
		if (!*s)
			return 0;
	}
	return strtoull(s, NULL, 10);
}

/* Section 7 step 2: validates the file behind fd without mapping it.
 * Fills geometry. */
static int validate(int fd, mpmc_queue *q, mpmc_error *err)
{
	int64_t deadline = now_mono() + 2 * NS;
	struct stat st;
	unsigned char h[100];
	for (;;) {
		if (fstat(fd, &st) != 0)
			return fail(err, MPMC_ESYS, errno, "fstat: %s", strerror(errno));
		if (!S_ISREG(st.st_mode))
			return fail(err, MPMC_EBADSEG, 0, "not a regular file");
		uint64_t size = (uint64_t)st.st_size;
		uint64_t magic = 0;
		uint32_t ready = 0;
		memset(h, 0, sizeof h);
		if (size >= sizeof h) {
			ssize_t r = pread(fd, h, sizeof h, 0);
			if (r < 0)
				return fail(err, MPMC_ESYS, errno, "read header: %s", strerror(errno));
			if (r != (ssize_t)sizeof h) {
				/* shrunk meanwhile: look again */
				if (now_mono() < deadline) {
					sleep_ns(MS);
					continue;
				}
				return fail(err, MPMC_EBADSEG, 0, "short header read (%zd bytes)", r);
			}
			magic = rd64(h, 0x00);
			ready = rd32(h, OFF_READY);
		}
		bool init = size == 0 || (size >= sizeof h && (magic == 0 || magic == MAGIC) && ready != READY);
		if (init) {
			struct flock fl;
			if (lock_entry(fd, 0, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_UNLCK) {
				if (size == 0)
					return fail(err, MPMC_EBADSEG, 0, "empty file");
				if (magic == 0)
					return fail(err, MPMC_EBADSEG, 0, "blank header");
				return fail(err, MPMC_EBADSEG, 0, "abandoned half-built segment");
			}
			if (now_mono() < deadline) {
				sleep_ns(MS);
				continue;
			}
		}
		if (size == 0)
			return fail(err, MPMC_EBADSEG, 0, "empty file");
		if (size < HDR_SIZE)
			return fail(err, MPMC_EBADSEG, 0, "file of %llu bytes is smaller than the header (%llu)",
				    (unsigned long long)size, (unsigned long long)HDR_SIZE);
		if (magic == MAGIC && ready != READY)
			return fail(err, MPMC_EBADSEG, 0, "segment never finished initialising");
		/* step 7, in order */
		if (magic != MAGIC) {
			if (magic == MAGIC_SWAPPED)
				return fail(err, MPMC_EBADSEG, 0, "segment of the other byte order");
			return fail(err, MPMC_EBADSEG, 0, "bad magic 0x%016llx", (unsigned long long)magic);
		}
		if (rd32(h, 0x10) != BOM)
			return fail(err, MPMC_EBADSEG, 0, "bad byte-order mark 0x%08x", rd32(h, 0x10));
		if (rd32(h, 0x14) != 8)
			return fail(err, MPMC_EBADSEG, 0, "word size %u, want 8", rd32(h, 0x14));
		if (rd16(h, 0x08) != 2)
			return fail(err, MPMC_EBADSEG, 0, "layout version %u.%u, this participant reads 2.x",
				    rd16(h, 0x08), rd16(h, 0x0A));
		if (ready != READY)
			return fail(err, MPMC_EBADSEG, 0, "not ready (0x%08x)", ready);
		if (rd32(h, 0x0C) != HDR_SIZE)
			return fail(err, MPMC_EBADSEG, 0, "header size 0x%x, want 0x%llx", rd32(h, 0x0C),
				    (unsigned long long)HDR_SIZE);
		if (rd32(h, 0x48) != NPART || rd32(h, 0x4C) != ENTRY_SIZE || rd64(h, 0x50) != PT_OFF)
			return fail(err, MPMC_EBADSEG, 0, "participants table %u x %u at 0x%llx, want 128 x 4096 at 0x1000",
				    rd32(h, 0x48), rd32(h, 0x4C), (unsigned long long)rd64(h, 0x50));
		uint64_t cap = rd64(h, 0x18), ss = rd64(h, 0x20);
		if (cap < 2 || cap > (1ULL << 30) || (cap & (cap - 1)) != 0)
			return fail(err, MPMC_EBADSEG, 0, "capacity %llu is not a power of two in [2, 2^30]",
				    (unsigned long long)cap);
		if (ss < 1 || ss > (1ULL << 30))
			return fail(err, MPMC_EBADSEG, 0, "slot size %llu not in [1, 2^30]", (unsigned long long)ss);
		uint64_t stride = (SLOT_HDR + ss + 63) & ~63ULL;
		if (cap * stride > MAX_TOTAL) /* no overflow: both are at most ~2^30 */
			return fail(err, MPMC_EBADSEG, 0, "capacity x stride %llu exceeds 2^40 - 0x81000",
				    (unsigned long long)(cap * stride));
		if (rd64(h, 0x28) != stride)
			return fail(err, MPMC_EBADSEG, 0, "slot stride %llu, want %llu",
				    (unsigned long long)rd64(h, 0x28), (unsigned long long)stride);
		uint64_t total = HDR_SIZE + cap * stride;
		if (rd64(h, 0x30) != total)
			return fail(err, MPMC_EBADSEG, 0, "total size %llu, want %llu",
				    (unsigned long long)rd64(h, 0x30), (unsigned long long)total);
		if (size != total)
			return fail(err, MPMC_EBADSEG, 0, "file size %llu, header says %llu",
				    (unsigned long long)size, (unsigned long long)total);
		/* step 8 */
		if ((uint64_t)st.st_blocks * 512 < size)
			return fail(err, MPMC_EBADSEG, 0, "sparse file: %llu of %llu bytes allocated",
				    (unsigned long long)st.st_blocks * 512, (unsigned long long)size);
		/* step 9: private geometry */
		q->cap = cap;
		q->mask = cap - 1;
		q->slot_size = ss;
		q->stride = stride;
		q->total = total;
		q->hflags = rd32(h, 0x60);
		return MPMC_OK;
	}
}

/* Section 7 step 4. */
static int join(mpmc_queue *q, mpmc_error *err)
{
	int64_t deadline = now_mono() + 2 * NS;
	bool cleaned_out = false;
	int i = 0;
	for (;;) {
		if (i >= NPART) {
			if (cleaned_out)
				return fail(err, MPMC_EBUSY, 0, "a Clean holds the participants table");
			return fail(err, MPMC_ETOOMANY, 0, "all %d participant entries are held", NPART);
		}
		struct flock fl;
		if (lock_entry(q->fd, i, F_OFD_SETLK, &fl) == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EACCES)
			return fail(err, MPMC_ESYS, errno, "lock entry %d: %s", i, strerror(errno));
		if (lock_entry(q->fd, i, F_OFD_GETLK, &fl) != 0) {
			i++;
			continue;
		}
		if (fl.l_type == F_UNLCK) {
			if (now_mono() >= deadline)
				i++;
			continue; /* the holder just left: try it again */
		}
		if (fl.l_start <= (off_t)PT_OFF &&
		    (fl.l_len == 0 || (uint64_t)fl.l_start + (uint64_t)fl.l_len >= HDR_SIZE)) {
			if (now_mono() >= deadline)
				return fail(err, MPMC_EBUSY, 0, "a Clean held the participants table for 2 s");
			cleaned_out = true;
			sleep_ns(MS);
			i = 0;
			continue;
		}
		i++;
	}
	q->self = i;
	uint64_t e = entry_off(i);
	for (int k = 0; k < NREC; k++)
		atomic_store(record(q, i, k), 0);
	if (atomic_load(a32(q, e + 0)) != 0)
		count(q, C_RECLAIMED);
	atomic_store(a64(q, e + 8), (uint64_t)getpid());
	atomic_store(a64(q, e + 16), start_ticks());
	atomic_store(a64(q, e + 24), (uint64_t)now_real());
	atomic_fetch_add(a64(q, e + 32), 1);
	atomic_store(a32(q, e + 0), 1);
	return MPMC_OK;
}

/* Section 7.1 step 5, then unmap and close. */
static void leave_entry(mpmc_queue *q)
{
	uint64_t e = entry_off(q->self);
	uint64_t bit = 1ULL << (q->self % 64);
	atomic_fetch_and(a64(q, OFF_NE_W + 8 * (uint64_t)(q->self / 64)), ~bit);
	atomic_fetch_and(a64(q, OFF_NF_W + 8 * (uint64_t)(q->self / 64)), ~bit);
	for (int k = 0; k < NREC; k++)
		atomic_store(record(q, q->self, k), 0);
	atomic_store(a32(q, e + 0), 0);
	atomic_store(a64(q, e + 8), 0);
}

static void destroy(mpmc_queue *q)
{
	if (q->base)
		munmap(q->base, q->total);
	if (q->fd >= 0)
		close(q->fd);
	for (int s = 0; s < 2; s++)
		if (q->efd[s] >= 0)
			close(q->efd[s]);
	free(q);
}

/* Is the file of fd found in path's directory under a name starting with
 * .mpmc-cleaning- (a Clean checking it, section 7 step 6)? */
static bool being_cleaned(const char *path, const struct stat *fst)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, sizeof dir, ".");
	else if (slash == path)
		snprintf(dir, sizeof dir, "/");
	else
		snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
	DIR *d = opendir(dir);
	if (!d)
		return false;
	bool found = false;
	struct dirent *de;
	while (!found && (de = readdir(d)) != NULL) {
		if (strncmp(de->d_name, ".mpmc-cleaning-", 15) != 0)
			continue;
		struct stat s;
		if (fstatat(dirfd(d), de->d_name, &s, AT_SYMLINK_NOFOLLOW) == 0 && s.st_dev == fst->st_dev &&
		    s.st_ino == fst->st_ino)
			found = true;
	}
	closedir(d);
	return found;
}

static bool names_file(const char *path, const struct stat *fst, bool *other)
{
	struct stat s;
	*other = false;
	if (lstat(path, &s) != 0)
		return false;
	if (s.st_dev == fst->st_dev && s.st_ino == fst->st_ino)
		return true;
	*other = true;
	return false;
}

/* A handle for the open file description fd (owned from now on), not yet
 * validated or joined; NULL when out of memory. */
static mpmc_queue *new_handle(int fd)
{
	mpmc_queue *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->fd = fd;
	q->self = -1;
	q->efd[0] = q->efd[1] = -1;
	atomic_init(&q->free_recs, (1ULL << NREC) - 1);
	atomic_init(&q->inflight, 0);
	atomic_init(&q->closing, 0);
	atomic_init(&q->sleepers[0], 0);
	atomic_init(&q->sleepers[1], 0);
	atomic_init(&q->spin_ns, 20 * US);
	atomic_init(&q->recovery_ns, 250 * MS);
	atomic_init(&q->idle_ns, 2000 * MS);
	atomic_init(&q->arm_short[0], 0);
	atomic_init(&q->arm_short[1], 0);
	atomic_init(&q->arm_since[0], 0);
	atomic_init(&q->arm_since[1], 0);
	atomic_flag_clear(&q->stall_lock[0]);
	atomic_flag_clear(&q->stall_lock[1]);
#ifdef MPMC_TEST_HOOKS
	const char *c = getenv("MPMC_C_CRASH");
	if (c)
		snprintf(q->crash, sizeof q->crash, "%s", c);
	c = getenv("MPMC_C_STOP");
	if (c)
		snprintf(q->stop, sizeof q->stop, "%s", c);
#endif
	return q;
}

/* The header flags this participant must act on: redelivery (refused) and
 * eventfd signalling (refused unless the caller has the eventfds, section
 * 15: a participant that cannot write them must not join). */
static int check_flags(mpmc_queue *q, bool have_eventfds, mpmc_error *err)
{
	if (q->hflags & HF_REDELIVER)
		return fail(err, MPMC_EREDELIVER, 0,
			    "the segment was created with Redeliver (header flag bit 0), "
			    "which this C participant does not implement (LAYOUT.md 10.4)");
	if ((q->hflags & HF_EVENTFD) && !have_eventfds)
		return fail(err, MPMC_ENOEVENTFD, 0,
			    "the segment signals eventfds (header flag bit 1): join it from a hand-over "
			    "with its eventfds (mpmc_open_fd, LAYOUT.md 14 and 15)");
	return MPMC_OK;
}

/* Maps the validated segment and joins it (section 7 steps 3 to 5). */
static int map_join(mpmc_queue *q, mpmc_error *err)
{
	void *m = mmap(NULL, q->total, PROT_READ | PROT_WRITE, MAP_SHARED, q->fd, 0);
	if (m == MAP_FAILED)
		return fail(err, MPMC_ESYS, errno, "mmap: %s", strerror(errno));
	q->base = m;
	int rc = join(q, err);
	if (rc)
		return rc;
	sweep(q);
	return MPMC_OK;
}

/* One attempt of Open. *again is set when path now names another file. */
static int open_once(const char *path, mpmc_queue **out, mpmc_error *err, bool *again)
{
	*again = false;
	int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ELOOP)
			return fail(err, MPMC_EBADSEG, 0, "%s is a symbolic link", path);
		if (errno == EISDIR)
			return fail(err, MPMC_EBADSEG, 0, "%s is a directory", path);
		return fail(err, MPMC_ESYS, errno, "open %s: %s", path, strerror(errno));
	}
	mpmc_queue *q = new_handle(fd);
	if (!q) {
		close(fd);
		return fail(err, MPMC_ESYS, ENOMEM, "out of memory");
	}
	int rc = validate(fd, q, err);
	if (rc == MPMC_OK)
		rc = check_flags(q, false, err);
	if (rc == MPMC_OK)
		rc = map_join(q, err);
	if (rc) {
		destroy(q);
		return rc;
	}
	/* step 6 */
	struct stat fst;
	if (fstat(fd, &fst) != 0) {
		int e = errno;
		leave_entry(q);
		destroy(q);
		return fail(err, MPMC_ESYS, e, "fstat: %s", strerror(e));
	}
	bool other;
	if (!names_file(path, &fst, &other)) {
		int64_t deadline = now_mono() + 2 * NS;
		while (!other && being_cleaned(path, &fst) && now_mono() < deadline) {
			sleep_ns(MS);
			if (names_file(path, &fst, &other))
				break;
		}
		if (!names_file(path, &fst, &other)) {
			leave_entry(q);
			destroy(q);
			*again = other;
			return fail(err, MPMC_ENOENT, ENOENT, "%s was removed while joining", path);
		}
	}
	*out = q;
	return MPMC_OK;
}

int mpmc_open(const char *path, mpmc_queue **out, mpmc_error *err)
{
	if (!path || !out)
		return fail(err, MPMC_EINVAL, 0, "no path");
	int rc = MPMC_ENOENT;
	for (int attempt = 0; attempt < 3; attempt++) {
		bool again;
		rc = open_once(path, out, err, &again);
		if (rc == MPMC_OK || !again)
			return rc;
	}
	return rc;
}

/* Is fd an eventfd? */
static bool is_eventfd(int fd)
{
	char link[64], target[64];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof target - 1);
	if (n < 0)
		return false;
	target[n] = 0;
	return strcmp(target, "anon_inode:[eventfd]") == 0;
}

/* Section 14: a new open file description of the file behind fd (a memfd
 * must carry the three seals), checked to be the same inode. */
static int reopen_fd(int fd, int *nfd, mpmc_error *err)
{
	struct stat st, nst;
	char link[64], target[256];
	if (fstat(fd, &st) != 0)
		return fail(err, MPMC_EBADSEG, 0, "fstat descriptor %d: %s", fd, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(err, MPMC_EBADSEG, 0, "descriptor %d is not a regular file or memfd", fd);
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, target, sizeof target - 1);
	target[n < 0 ? 0 : n] = 0;
	if (strncmp(target, "/memfd:", 7) == 0) {
		const int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
		int seals = fcntl(fd, F_GET_SEALS);
		if (seals < 0)
			return fail(err, MPMC_EBADSEG, 0, "memfd seals: %s", strerror(errno));
		if ((seals & need) != need)
			return fail(err, MPMC_EBADSEG, 0,
				    "memfd not sealed against shrinking and growing (seals 0x%x, need 0x%x): "
				    "a peer could truncate it", (unsigned)seals, (unsigned)need);
	}
	*nfd = open(link, O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (*nfd < 0)
		return fail(err, MPMC_ESYS, errno, "reopen descriptor %d (%s) for a description of our own: %s",
			    fd, target, strerror(errno));
	if (fstat(*nfd, &nst) != 0 || nst.st_dev != st.st_dev || nst.st_ino != st.st_ino) {
		close(*nfd);
		*nfd = -1;
		return fail(err, MPMC_EBADSEG, 0, "reopening descriptor %d gave another file", fd);
	}
	return MPMC_OK;
}

/* Keeps a non-blocking duplicate of eventfd fd for side s. */
static int keep_eventfd(mpmc_queue *q, int s, int fd, mpmc_error *err)
{
	if (!is_eventfd(fd))
		return fail(err, MPMC_EBADSEG, 0, "descriptor %d is not an eventfd", fd);
	q->efd[s] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (q->efd[s] < 0)
		return fail(err, MPMC_ESYS, errno, "dup eventfd: %s", strerror(errno));
	int fl = fcntl(q->efd[s], F_GETFL);
	if (fl < 0 || fcntl(q->efd[s], F_SETFL, fl | O_NONBLOCK) != 0)
		return fail(err, MPMC_ESYS, errno, "eventfd O_NONBLOCK: %s", strerror(errno));
	return MPMC_OK;
}

int mpmc_open_fd(int fd, int not_full_efd, int not_empty_efd, mpmc_queue **out, mpmc_error *err)
{
	if (fd < 0 || !out)
		return fail(err, MPMC_EINVAL, 0, "no descriptor");
	int nfd;
	int rc = reopen_fd(fd, &nfd, err);
	if (rc)
		return rc;
	mpmc_queue *q = new_handle(nfd);
	if (!q) {
		close(nfd);
		return fail(err, MPMC_ESYS, ENOMEM, "out of memory");
	}
	bool have = not_full_efd >= 0 && not_empty_efd >= 0;
	rc = validate(nfd, q, err);
	if (rc == MPMC_OK)
		rc = check_flags(q, have, err);
	/* The eventfds before joining: the sweep may already kick. */
	if (rc == MPMC_OK && (q->hflags & HF_EVENTFD))
		rc = keep_eventfd(q, PRODUCERS, not_full_efd, err);
	if (rc == MPMC_OK && (q->hflags & HF_EVENTFD))
		rc = keep_eventfd(q, CONSUMERS, not_empty_efd, err);
	if (rc == MPMC_OK)
		rc = map_join(q, err);
	if (rc) {
		destroy(q);
		return rc;
	}
	*out = q;
	return MPMC_OK;
}

int mpmc_close(mpmc_queue *q)
{
	if (!q)
		return MPMC_EINVAL;
	atomic_store(&q->closing, 1);
	/* Wake our own sleepers (section 7.1 step 3: only the sides on which
	 * a thread of this handle waits), then wait until no call is in
	 * flight. A waiting thread counts itself in sleepers[] before it
	 * checks closing (seq_cst on both sides), so either it sees closing or
	 * this load sees it; a sleeper that read closing clear sampled its
	 * futex word before this kick, so one kick is enough. The kick is
	 * repeated every 100 ms only as a safety net. */
	for (int i = 0;; i++) {
		if (i % 100 == 0) {
			if (atomic_load(&q->sleepers[CONSUMERS]) > 0)
				kick(q, CONSUMERS);
			if (atomic_load(&q->sleepers[PRODUCERS]) > 0)
				kick(q, PRODUCERS);
		}
		if (atomic_load(&q->inflight) == 0)
			break;
		sleep_ns(MS);
	}
	leave_entry(q);
	destroy(q);
	return MPMC_OK;
}
