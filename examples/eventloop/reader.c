//go:build ignore

/*
 * reader.c: the example's C reader (the Go writer builds it with cc and
 * starts it next to the Go readers; the line above keeps `go build` off it).
 *
 *	cc -std=c11 -O2 -Wall -Wextra -Werror -I../../c -o reader reader.c ../../c/mpmc.c
 *	./reader @mpmc-eventloop-PID
 *
 * It connects to the writer's unix socket, receives the hand-over of
 * LAYOUT.md section 14 (a 40-byte header, the path, SCM_RIGHTS with the
 * memfd, then the producers' and the consumers' eventfds), joins the memfd
 * through an open file description of its own (mpmc_open_fd reopens
 * /proc/self/fd/N), and waits in an epoll loop on the consumers' eventfd
 * next to its socket, with the protocol of section 15: drain with
 * mpmc_try_dequeue until EEMPTY; arm (asleep bit, re-check); if not ready,
 * epoll_wait for at most the poll hint (short when the announcement showed
 * a claim made before it); read the eventfd; drain again; once shut down
 * and drained, write the eventfd for the next reader. Its claims that
 * find the producers' asleep bit wake the producers (futex and notFull
 * eventfd), inside mpmc_try_dequeue. It prints each message's id, one a
 * line, then "read N wakeups W", and exits 0 once the queue is shut down
 * and drained; on any error it says why on stderr and exits 1. Before
 * exiting it checks that it holds no descriptor it did not inherit.
 */
#define _GNU_SOURCE
#include "mpmc.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define HANDOVER_MAGIC 0x444E45534D504D4DULL /* "MPMCSEND" */
#define HANDOVER_SIZE 40
#define HANDOVER_MAX_PATH 4096
#define HANDOVER_EVENTFD 1u
#define MAX_FDS 3

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "reader.c: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t rd64(const unsigned char *b) { uint64_t v; memcpy(&v, b, 8); return v; }
static uint32_t rd32(const unsigned char *b) { uint32_t v; memcpy(&v, b, 4); return v; }

/* Reads exactly n bytes (a stream socket may deliver the message in
 * pieces); 0 on success. */
static int read_full(int fd, unsigned char *b, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		b += r, n -= (size_t)r;
	}
	return 0;
}

static void close_all(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* Receives the hand-over on sock (section 14) and joins the queue. Every
 * descriptor received is closed before it returns, on every path. */
static mpmc_queue *receive(int sock)
{
	unsigned char buf[HANDOVER_SIZE + HANDOVER_MAX_PATH];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int) * (MAX_FDS + 1))];
	} ctl;
	struct iovec iov = { buf, sizeof buf };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
	ssize_t n;
	while ((n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
	}
	if (n < 0)
		die("recvmsg: %s", strerror(errno));
	int fds[MAX_FDS + 1], nfds = 0;
	const char *bad = NULL;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
			bad = "unexpected control message";
			continue;
		}
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
			if (nfds < MAX_FDS + 1)
				fds[nfds++] = fd;
			else
				close(fd);
		}
	}
#define FAIL(...) do { close_all(fds, nfds); die(__VA_ARGS__); } while (0)
	if (n == 0)
		FAIL("the writer closed the connection before handing a queue over");
	if (bad)
		FAIL("hand-over: %s", bad);
	if (m.msg_flags & MSG_CTRUNC)
		FAIL("hand-over: more descriptors than a hand-over carries");
	size_t got = (size_t)n;
	if (got < HANDOVER_SIZE && read_full(sock, buf + got, HANDOVER_SIZE - got) != 0)
		FAIL("hand-over: the writer hung up half-way through the header");
	got = got < HANDOVER_SIZE ? HANDOVER_SIZE : got;
	if (rd64(buf) != HANDOVER_MAGIC)
		FAIL("hand-over: magic 0x%016llx", (unsigned long long)rd64(buf));
	if (rd32(buf + 8) != 1)
		FAIL("hand-over: version %u, this reader reads 1", rd32(buf + 8));
	uint32_t kind = rd32(buf + 12), flags = rd32(buf + 16), nfd = rd32(buf + 20), plen = rd32(buf + 32);
	if (kind != 0 && kind != 1)
		FAIL("hand-over: segment kind %u (this reader joins files and memfds)", kind);
	if (plen > HANDOVER_MAX_PATH)
		FAIL("hand-over: path of %u bytes", plen);
	if (got < HANDOVER_SIZE + plen && read_full(sock, buf + got, HANDOVER_SIZE + plen - got) != 0)
		FAIL("hand-over: the writer hung up half-way through the path");
	/* The path (a named segment's) is informational; a memfd has none. */
	int want = (flags & HANDOVER_EVENTFD) ? 3 : 1;
	if ((int)nfd != want || nfds != want)
		FAIL("hand-over: %d descriptors received, header says %u, expected %d", nfds, nfd, want);
	mpmc_queue *q;
	mpmc_error err;
	int rc = mpmc_open_fd(fds[0], want == 3 ? fds[1] : -1, want == 3 ? fds[2] : -1, &q, &err);
	close_all(fds, nfds); /* the handle has a description and eventfds of its own */
	if (rc != MPMC_OK)
		die("join: %s: %s", mpmc_strerror(rc), err.reason);
	return q;
#undef FAIL
}

static int dial(const char *addr)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(addr);
	if (len == 0 || len >= sizeof sa.sun_path)
		die("bad socket address %s", addr);
	memcpy(sa.sun_path, addr, len);
	if (addr[0] == '@')
		sa.sun_path[0] = 0; /* abstract, as Go spells it */
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		die("socket: %s", strerror(errno));
	if (connect(s, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) != 0)
		die("connect %s: %s", addr, strerror(errno));
	return s;
}

/* The descriptors open at the start (0, 1, 2 and whatever the environment
 * let us inherit); at the end, no other may be open. */
static int inherited[256], ninherited;

static bool was_inherited(int fd)
{
	for (int i = 0; i < ninherited; i++)
		if (inherited[i] == fd)
			return true;
	return false;
}

static void scan_fds(bool start)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		die("opendir /proc/self/fd: %s", strerror(errno));
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		int fd = atoi(de->d_name);
		if (fd == dirfd(d))
			continue;
		if (start) {
			if (ninherited < (int)(sizeof inherited / sizeof inherited[0]))
				inherited[ninherited++] = fd;
			continue;
		}
		if (was_inherited(fd))
			continue;
		char link[64], target[256];
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, target, sizeof target - 1);
		target[n < 0 ? 0 : n] = 0;
		die("descriptor %d (%s) leaked", fd, target);
	}
	closedir(d);
}

int main(int argc, char **argv)
{
	if (argc != 2)
		die("usage: reader SOCKET (@name for an abstract one)");
	scan_fds(true);
	static char obuf[1 << 16];
	setvbuf(stdout, obuf, _IOFBF, sizeof obuf);

	int sock = dial(argv[1]);
	mpmc_queue *q = receive(sock);
	int efd = mpmc_eventfd(q, MPMC_NOT_EMPTY);
	if (efd < 0)
		die("the queue does not signal eventfds");

	/* One epoll set: the consumers' eventfd and the control socket. */
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1: %s", strerror(errno));
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = efd };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) != 0)
		die("epoll_ctl eventfd: %s", strerror(errno));
	ev = (struct epoll_event){ .events = EPOLLIN | EPOLLRDHUP, .data.fd = sock };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sock, &ev) != 0)
		die("epoll_ctl socket: %s", strerror(errno));
	int sock_open = 1;

	size_t cap = (size_t)mpmc_slot_size(q);
	unsigned char *buf = malloc(cap);
	if (!buf)
		die("out of memory");
	unsigned long long nread = 0, wakes = 0;
	for (;;) {
		/* Drain. */
		int rc;
		size_t n;
		while ((rc = mpmc_try_dequeue(q, buf, cap, &n)) == MPMC_OK) {
			if (n != 16)
				die("message of %zu bytes", n);
			uint64_t id = 0;
			for (int i = 7; i >= 0; i--)
				id = id << 8 | buf[i]; /* little-endian, as the writer puts it */
			printf("%llu\n", (unsigned long long)id);
			nread++;
		}
		if (rc == MPMC_ECLOSED) {
			/* Shut down and drained. Pass Shutdown's event on (LAYOUT.md
			 * 15): another reader whose epoll_wait lost it to our read
			 * would otherwise sleep out its 2 s hint. */
			uint64_t one = 1;
			if (write(efd, &one, sizeof one) < 0 && errno != EAGAIN)
				die("write eventfd: %s", strerror(errno));
			break;
		}
		if (rc != MPMC_EEMPTY)
			die("try_dequeue: %s", mpmc_strerror(rc));
		/* Arm: announce and re-check; ready means drain again at once. */
		int64_t poll_ns;
		rc = mpmc_arm(q, MPMC_NOT_EMPTY, &poll_ns);
		if (rc < 0)
			die("arm: %s", mpmc_strerror(rc));
		if (rc == 1)
			continue;
		int timeout_ms = (int)((poll_ns + 999999) / 1000000); /* round up: never spin */
		struct epoll_event evs[2];
		int k = epoll_wait(ep, evs, 2, timeout_ms < 1 ? 1 : timeout_ms);
		if (k < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int i = 0; i < k; i++) {
			if (evs[i].data.fd == efd) {
				wakes++;
				if ((rc = mpmc_consume(q, MPMC_NOT_EMPTY)) != MPMC_OK)
					die("read eventfd: %s: %s", mpmc_strerror(rc), strerror(errno));
			} else if (evs[i].data.fd == sock && sock_open) {
				/* The writer hung up (or wrote): the control path. The
				 * queue's shutdown flag is what ends us; stop watching. */
				epoll_ctl(ep, EPOLL_CTL_DEL, sock, NULL);
				sock_open = 0;
			}
		}
	}
	printf("read %llu wakeups %llu\n", nread, wakes);
	free(buf);
	mpmc_close(q);
	close(ep);
	close(sock);
	scan_fds(false);
	if (fflush(stdout) != 0 || ferror(stdout))
		die("write stdout: %s", strerror(errno));
	return 0;
}
