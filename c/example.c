/*
 * example: a producer or consumer of an mpmc queue, in C.
 *
 *   example produce PATH MSG...   enqueue each MSG (waits while full)
 *   example consume PATH [N]      print messages, one a line, until N were
 *                                 received or the queue is shut down and drained
 *   example shutdown PATH         shut the queue down for every process
 *
 * The queue must exist (created by a Go program with mpmc.Create).
 * Build: cc -std=c11 -O2 -o example example.c mpmc.c
 */
#include "mpmc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s produce PATH MSG... | consume PATH [N] | shutdown PATH\n", argv[0]);
		return 2;
	}
	mpmc_queue *q;
	mpmc_error err;
	if (mpmc_open(argv[2], &q, &err) != MPMC_OK) {
		fprintf(stderr, "open %s: %s: %s\n", argv[2], mpmc_strerror(err.code), err.reason);
		return 1;
	}
	int status = 0;
	if (strcmp(argv[1], "produce") == 0) {
		for (int i = 3; i < argc && status == 0; i++) {
			int rc = mpmc_enqueue(q, argv[i], strlen(argv[i]), -1);
			if (rc != MPMC_OK) {
				fprintf(stderr, "enqueue: %s\n", mpmc_strerror(rc));
				status = 1;
			}
		}
	} else if (strcmp(argv[1], "consume") == 0) {
		long want = argc > 3 ? atol(argv[3]) : -1;
		size_t cap = (size_t)mpmc_slot_size(q), n;
		char *buf = malloc(cap);
		for (long got = 0; buf && (want < 0 || got < want); got++) {
			int rc = mpmc_dequeue(q, buf, cap, &n, -1);
			if (rc != MPMC_OK) {
				/* MPMC_ECLOSED: shut down and drained, the normal end. */
				if (rc != MPMC_ECLOSED) {
					fprintf(stderr, "dequeue: %s\n", mpmc_strerror(rc));
					status = 1;
				}
				break;
			}
			printf("%.*s\n", (int)n, buf);
		}
		if (!buf)
			status = 1;
		free(buf);
	} else if (strcmp(argv[1], "shutdown") == 0) {
		status = mpmc_shutdown(q) != MPMC_OK;
	} else {
		fprintf(stderr, "unknown command %s\n", argv[1]);
		status = 2;
	}
	mpmc_close(q);
	return status;
}
