/*
 * peer: the C side of the interop tests (interop/interop_test.go).
 * Built with -DMPMC_TEST_HOOKS, so that MPMC_C_CRASH=<step> kills it by
 * SIGKILL at that step of an operation (enqueue-claimed,
 * enqueue-before-publish, dequeue-claimed, dequeue-before-release).
 *
 *   peer produce PATH ID COUNT   COUNT 12-byte records (u32 id, u64 seq, little endian)
 *   peer consume PATH            records to stdout until the queue is closed
 *   peer sleep-dequeue PATH      one dequeue: "got MSG" or "closed"
 *   peer sleep-enqueue PATH MSG  one enqueue: "enqueued" or "closed"
 *   peer shutdown PATH
 *   peer put PATH MSG...         enqueue each, then "put"
 *   peer produce-mt PATH ID0 THREADS COUNT  THREADS threads on one handle, ids ID0..
 *   peer consume-mt PATH THREADS  THREADS threads on one handle until closed; then,
 *                                per thread, a u64 byte count and its records
 *   peer drain PATH              "got MSG" for each message until closed, then "closed"
 *   peer take PATH N             "ready", then N dequeues: "got MSG" each
 *   peer crash-enqueue PATH      try_enqueue, to die at MPMC_C_CRASH
 *   peer crash-dequeue PATH      try_dequeue, to die at MPMC_C_CRASH
 *   peer open PATH               exit 0 if it opens; else "CODE: reason", exit 3
 *
 * Knobs (environment): MPMC_C_SPIN_NS, MPMC_C_RECOVERY_MS, MPMC_C_IDLE_MS,
 * MPMC_C_TIMEOUT_MS (of every blocking call, default 60000).
 * Exit status 0 on success; anything on stderr is a failure.
 */
#include "mpmc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

static long env(const char *name, long def)
{
	const char *s = getenv(name);
	return s && *s ? atol(s) : def;
}

static const char *code_name(int rc)
{
	switch (rc) {
	case MPMC_EBADSEG: return "EBADSEG";
	case MPMC_EREDELIVER: return "EREDELIVER";
	case MPMC_ESYS: return "ESYS";
	case MPMC_ETOOMANY: return "ETOOMANY";
	case MPMC_EBUSY: return "EBUSY";
	case MPMC_ENOENT: return "ENOENT";
	}
	return "OTHER";
}

static void put_le(unsigned char *b, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		b[i] = (unsigned char)(v >> (8 * i));
}

struct worker {
	mpmc_queue *q;
	long id, count;
	int timeout, failed;
	unsigned char *out;
	size_t len, cap;
	thrd_t t;
};

static int produce_worker(void *arg)
{
	struct worker *w = arg;
	unsigned char msg[12];
	put_le(msg, (uint64_t)w->id, 4);
	for (long s = 0; s < w->count; s++) {
		put_le(msg + 4, (uint64_t)s, 8);
		int rc = mpmc_enqueue(w->q, msg, sizeof msg, w->timeout);
		if (rc != MPMC_OK) {
			fprintf(stderr, "thread producer %ld, message %ld: %s\n", w->id, s, mpmc_strerror(rc));
			w->failed = 1;
			return 1;
		}
	}
	return 0;
}

static int consume_worker(void *arg)
{
	struct worker *w = arg;
	unsigned char buf[64];
	size_t n;
	for (;;) {
		int rc = mpmc_dequeue(w->q, buf, sizeof buf, &n, w->timeout);
		if (rc == MPMC_ECLOSED)
			return 0;
		if (rc != MPMC_OK || n != 12) {
			fprintf(stderr, "thread consumer: %s, %zu bytes\n", mpmc_strerror(rc), n);
			w->failed = 1;
			return 1;
		}
		if (w->len + n > w->cap) {
			size_t c = w->cap ? 2 * w->cap : 4096;
			unsigned char *o = realloc(w->out, c);
			if (!o) {
				fprintf(stderr, "out of memory\n");
				w->failed = 1;
				return 1;
			}
			w->out = o, w->cap = c;
		}
		memcpy(w->out + w->len, buf, n);
		w->len += n;
	}
}

/* Runs threads workers of fn on one handle; for consumers, writes their
 * output. */
static int run_threads(mpmc_queue *q, int (*fn)(void *), int threads, long id0, long count, int timeout, int out)
{
	struct worker w[16];
	int status = 0;
	if (threads < 1 || threads > 16) {
		fprintf(stderr, "1..16 threads\n");
		return 2;
	}
	memset(w, 0, sizeof w);
	for (int i = 0; i < threads; i++) {
		w[i].q = q, w[i].id = id0 + i, w[i].count = count, w[i].timeout = timeout;
		if (thrd_create(&w[i].t, fn, &w[i]) != thrd_success) {
			fprintf(stderr, "thrd_create failed\n");
			return 1;
		}
	}
	for (int i = 0; i < threads; i++) {
		thrd_join(w[i].t, NULL);
		status |= w[i].failed;
	}
	for (int i = 0; out && i < threads; i++) {
		unsigned char len[8];
		put_le(len, (uint64_t)w[i].len, 8);
		if (fwrite(len, 1, 8, stdout) != 8 || fwrite(w[i].out, 1, w[i].len, stdout) != w[i].len) {
			fprintf(stderr, "write failed\n");
			status = 1;
		}
	}
	for (int i = 0; i < threads; i++)
		free(w[i].out);
	return status;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: peer ROLE PATH ...\n");
		return 2;
	}
	const char *role = argv[1], *path = argv[2];
	mpmc_queue *q;
	mpmc_error err;
	int rc = mpmc_open(path, &q, &err);
	if (strcmp(role, "open") == 0) {
		if (rc == MPMC_OK) {
			mpmc_close(q);
			return 0;
		}
		printf("%s: %s\n", code_name(rc), err.reason);
		return 3;
	}
	if (rc != MPMC_OK) {
		fprintf(stderr, "open %s: %s: %s\n", path, mpmc_strerror(rc), err.reason);
		return 1;
	}
	mpmc_set_spin_ns(q, env("MPMC_C_SPIN_NS", 20000));
	mpmc_set_recovery_timeout_ms(q, env("MPMC_C_RECOVERY_MS", 250));
	mpmc_set_idle_slice_ms(q, env("MPMC_C_IDLE_MS", 2000));
	int timeout = (int)env("MPMC_C_TIMEOUT_MS", 60000);
	size_t cap = (size_t)mpmc_slot_size(q), n = 0;
	char *buf = malloc(cap + 1);
	int status = 0;
	if (!buf) {
		fprintf(stderr, "out of memory\n");
		return 1;
	}

	if (strcmp(role, "produce") == 0 && argc == 5) {
		unsigned char msg[12];
		long id = atol(argv[3]), cnt = atol(argv[4]);
		put_le(msg, (uint64_t)id, 4);
		for (long s = 0; s < cnt; s++) {
			put_le(msg + 4, (uint64_t)s, 8);
			if ((rc = mpmc_enqueue(q, msg, sizeof msg, timeout)) != MPMC_OK) {
				fprintf(stderr, "producer %ld, message %ld: %s\n", id, s, mpmc_strerror(rc));
				status = 1;
				break;
			}
		}
	} else if (strcmp(role, "produce-mt") == 0 && argc == 6) {
		status = run_threads(q, produce_worker, atoi(argv[4]), atol(argv[3]), atol(argv[5]), timeout, 0);
	} else if (strcmp(role, "consume-mt") == 0 && argc == 4) {
		status = run_threads(q, consume_worker, atoi(argv[3]), 0, 0, timeout, 1);
	} else if (strcmp(role, "consume") == 0) {
		for (;;) {
			rc = mpmc_dequeue(q, buf, cap, &n, timeout);
			if (rc == MPMC_ECLOSED)
				break;
			if (rc != MPMC_OK) {
				fprintf(stderr, "dequeue: %s\n", mpmc_strerror(rc));
				status = 1;
				break;
			}
			if (n != 12) {
				fprintf(stderr, "message of %zu bytes\n", n);
				status = 1;
				break;
			}
			if (fwrite(buf, 1, n, stdout) != n) {
				fprintf(stderr, "write failed\n");
				status = 1;
				break;
			}
		}
	} else if (strcmp(role, "sleep-dequeue") == 0) {
		rc = mpmc_dequeue(q, buf, cap, &n, timeout);
		if (rc == MPMC_OK)
			printf("got %.*s\n", (int)n, buf);
		else if (rc == MPMC_ECLOSED)
			printf("closed\n");
		else {
			fprintf(stderr, "dequeue: %s\n", mpmc_strerror(rc));
			status = 1;
		}
	} else if (strcmp(role, "sleep-enqueue") == 0 && argc == 4) {
		rc = mpmc_enqueue(q, argv[3], strlen(argv[3]), timeout);
		if (rc == MPMC_OK)
			printf("enqueued\n");
		else if (rc == MPMC_ECLOSED)
			printf("closed\n");
		else {
			fprintf(stderr, "enqueue: %s\n", mpmc_strerror(rc));
			status = 1;
		}
	} else if (strcmp(role, "shutdown") == 0) {
		if ((rc = mpmc_shutdown(q)) != MPMC_OK) {
			fprintf(stderr, "shutdown: %s\n", mpmc_strerror(rc));
			status = 1;
		}
	} else if (strcmp(role, "put") == 0) {
		for (int i = 3; i < argc && !status; i++) {
			if ((rc = mpmc_enqueue(q, argv[i], strlen(argv[i]), timeout)) != MPMC_OK) {
				fprintf(stderr, "enqueue %s: %s\n", argv[i], mpmc_strerror(rc));
				status = 1;
			}
		}
		if (!status)
			printf("put\n");
	} else if (strcmp(role, "drain") == 0) {
		while ((rc = mpmc_dequeue(q, buf, cap, &n, timeout)) == MPMC_OK)
			printf("got %.*s\n", (int)n, buf);
		if (rc == MPMC_ECLOSED)
			printf("closed\n");
		else {
			fprintf(stderr, "dequeue: %s\n", mpmc_strerror(rc));
			status = 1;
		}
	} else if (strcmp(role, "take") == 0 && argc == 4) {
		printf("ready\n");
		fflush(stdout);
		long want = atol(argv[3]);
		for (long i = 0; i < want; i++) {
			if ((rc = mpmc_dequeue(q, buf, cap, &n, timeout)) != MPMC_OK) {
				fprintf(stderr, "dequeue %ld of %ld: %s\n", i + 1, want, mpmc_strerror(rc));
				status = 1;
				break;
			}
			printf("got %.*s\n", (int)n, buf);
			fflush(stdout);
		}
	} else if (strcmp(role, "crash-enqueue") == 0) {
		rc = mpmc_try_enqueue(q, "never acknowledged", 18 < cap ? 18 : cap);
		fprintf(stderr, "crash-enqueue survived its crash point (%s)\n", mpmc_strerror(rc));
		status = 1;
	} else if (strcmp(role, "crash-dequeue") == 0) {
		rc = mpmc_try_dequeue(q, buf, cap, &n);
		fprintf(stderr, "crash-dequeue survived its crash point (%s)\n", mpmc_strerror(rc));
		status = 1;
	} else {
		fprintf(stderr, "unknown role %s or wrong arguments\n", role);
		status = 2;
	}
	free(buf);
	fflush(stdout);
	mpmc_close(q);
	return status;
}
