/*
 * mpmc.pml: a SPIN model of the mpmc shared-memory protocol (ring.go,
 * wait.go, stall.go, mpmc.go, batch.go, participants.go), with crashes.
 *
 * Every Promela step that touches a shared word is commented with the
 * code step it stands for (the names of ring.go's transition table, E1..E7,
 * D1..D6, S1, R1..R3, and file/function for the others). model/README.md
 * says what is modelled, what is abstracted and why that is sound.
 *
 * Processes (one Promela process = one OS process = one participant, one
 * goroutine; participant index = process id):
 *   0, 1  producers: M messages each, Enqueue (or EnqueueBatch of 2) each
 *   2, 3  consumers: Dequeue (or DequeueBatch of 2) until ErrClosed
 *   4     admin: Shutdown at any moment; after a crash, a new participant
 *         that joins the dead one's entry (join + Open's recoverAll)
 *
 * Configuration (-D flags, see run.sh):
 *   M=n          messages per producer (default 3; ids 1..2M, 2M <= 8)
 *   BATCH        producer 0 uses EnqueueBatch of 2, consumer 2 DequeueBatch of 2
 *   SHUTDOWN     the admin calls Shutdown; consumers stop at ErrClosed
 *                (without it: no Shutdown, consumers stop when their
 *                context is cancelled once every acknowledged message is
 *                accounted for, and idle slices never time out)
 *   IDLETIMEOUT  idle futex slices (idleSlice) may time out; without it only
 *                the short slices the protocol relies on may
 *   MAXCRASH=n   crashes per run (0 or 1)
 *   VICTIM=i     with MAXCRASH=1: process i is the one that may crash
 *                (default: any one, or none, chosen by init)
 *   RESERVE      producer 1 (with ONEPROD: 0) uses Reserve / Commit
 *   RESERVEALL   every producer does; ABORT: a reservation may be aborted
 *   TAKE         consumer 3 (with ONECONS: 2) uses Take / Release
 *   TAKEALL      every consumer does
 *   HOLDWAKE     a side whose every blocker is a hold never times out a
 *                short slice (it relies on finish()'s wake-up)
 *   JOIN         a new participant may join a dead one's entry
 *   REDELIVER    Config.Redeliver (R3)
 *   LIVE         add the liveness claim (run with -a -f)
 * Mutants: MUT_E1_AFTER_E2, MUT_S1_AFTER_RETRY, MUT_NO_CLAIMBEFORE,
 *   MUT_NO_WAKE, MUT_NO_LIVECHECK, MUT_SHUT_AFTER, MUT_JOIN_NOCLEAR,
 *   MUT_FINISH_NOFENCE.
 */

#ifndef M
#define M 3
#endif
#ifndef MAXCRASH
#define MAXCRASH 1
#endif

#define CAP    2
#define NPROC  5             /* participants: P0 P1 C0 C1 admin */
#define NMSG   (2*M)
#define NPOS   (2*M + 4)     /* positions ever claimed, bounded */
#define ADMIN  4

#define PROD 0               /* side producers */
#define CONS 1               /* side consumers */

/* slot word: seq<<2 | flags (ring.go seqWord) */
#define FSKIP 1              /* slotSkipped */
#define FTAKE 2              /* slotTakeover */
#define SEQ(w)    ((w) >> 2)
#define SW(s, f)  (((s) << 2) | (f))
#define SLOT(p)   ((p) % CAP)

/* record (ring.go recordFor): claim | side | count-1 | position; 0 = idle */
#define REC(s, p, n)  (128 | ((s) << 6) | (((n) - 1) << 5) | (p))
#define RCLAIM(r)     ((r) & 128)
#define RSIDE(r)      (((r) >> 6) & 1)
#define RN(r)         ((((r) >> 5) & 1) + 1)
#define RPOS(r)       ((r) & 31)
#define COVERS(r, s, p) (RCLAIM(r) && RSIDE(r) == (s) && (p) >= RPOS(r) && (p) - RPOS(r) < RN(r))

/* bookkeeping (ghost) of a producer that has ended, done in its last
 * shared step: it touches no shared word afterwards, so a separate step
 * would only add interleavings of nothing */
#define PRODEND(fin) if :: fin -> pdone[me] = 1; nended++; counted = 1 :: else -> skip fi

/* results */
#define R_OK     0
#define R_FULL   1           /* ErrFull, ErrEmpty */
#define R_PEND   2           /* errPending */
#define R_CLOSED 3           /* ErrClosed */
#define R_RETRY  4           /* errRetry */
#define R_CANCEL 5           /* ctx.Err() */

/* message ids: producer i's k-th message (k = 1..M) is i*M + k; +64 marks
 * a redelivered copy (flagRedelivered) in ghost words */
#define MSGID(i, k)   ((i) * M + (k))
#define MPROD(id)     (((id) - 1) / M)
#define MSEQ(id)      (((id) - 1) % M + 1)

/* ---------------- shared memory (the segment) ---------------- */
byte enqPos; bit enqA;       /* enqueuePos: position, bit 63 (consumers asleep) */
byte deqPos; bit deqA;       /* dequeuePos: position, bit 63 (producers asleep) */
byte seq[CAP];               /* slot.seq */
byte pay[CAP];               /* slot payload (the message id) */
bit  payR[CAP];              /* slot.flags & flagRedelivered */
bit  shutdown;               /* the shutdown flag */
byte rec[NPROC + 1];         /* a claim record per participant entry; rec[NPROC]: a second
                              * record of entry deadIdx, the pooled one the joiner takes */

/* ---------------- the kernel ---------------- */
bit  alive[NPROC];           /* the participant's F_OFD lock is held */
/* The futex words, as seen by each sleeper: stale[i] is "the word of i's
 * side differs from the value i sampled" (the word only grows and never
 * wraps in a bounded run, so this is exact); inwait[i] is "i is queued in
 * FUTEX_WAIT". */
bit  stale[NPROC];
bit  inwait[NPROC];
bit  insample[NPROC];        /* i sampled its futex word and has not left the wait yet */

/* ---------------- bookkeeping and ghosts ---------------- */
byte crashes;
byte deadIdx = 255;          /* the entry of the crashed participant */
bit  crashed[NPROC];         /* ghost: the process is dead (not the lock) */
bit  pdone[2];               /* ghost: producer i has stopped (done or dead) */
bit  acked[NMSG + 1];        /* ghost: its Enqueue returned success */
bit  delivered[NMSG + 1];    /* ghost: a Dequeue returned it */
bit  lostok[NMSG + 1];       /* ghost: a consumer that took it died first */
byte prodCl[CAP];            /* ghost: 1 + process holding a producer claim of the slot */
byte consCl[CAP];            /* ghost: 1 + process holding a consumer claim of the slot */
byte lastSeen[4];            /* ghost: consumer c's last sequence of producer i: [2*(c-2)+i] */
byte nended;                 /* processes ended (crashed or done) */
byte nstarted;
bit  finished;                   /* ghost: every process has ended */

/* every acknowledged message is delivered or accounted for by a crash */
#define ACCOUNTED(m) ((m) > NMSG || !acked[m] || delivered[m] || lostok[m])
#define ALLDONE (pdone[0] && pdone[1] && ACCOUNTED(1) && ACCOUNTED(2) && ACCOUNTED(3) \
                 && ACCOUNTED(4) && ACCOUNTED(5) && ACCOUNTED(6) && ACCOUNTED(7) && ACCOUNTED(8))

#ifdef SHUTDOWN
#define CTXCANCEL 0
#else
#define CTXCANCEL 1
#endif
#ifdef IDLETIMEOUT
#define IDLE_TIMEOUTS 1
#else
#define IDLE_TIMEOUTS 0
#endif
/* without Shutdown the flag is always 0: its loads are left out */
#ifdef SHUTDOWN
#define LOADSHUT(v) atomic { v = shutdown }
#else
#define LOADSHUT(v) v = 0
#endif
/* zero-copy holds (zerocopy.go): which producers Reserve / Commit and which
 * consumers Take / Release; ABORT: a reservation may be aborted */
#if defined(RESERVEALL)
#define ZC0 1
#define ZC1 1
#elif defined(RESERVE) && defined(ONEPROD)
#define ZC0 1
#define ZC1 0
#elif defined(RESERVE)
#define ZC0 0
#define ZC1 1
#else
#define ZC0 0
#define ZC1 0
#endif
#if defined(TAKEALL)
#define ZC2 1
#define ZC3 1
#elif defined(TAKE) && defined(ONECONS)
#define ZC2 1
#define ZC3 0
#elif defined(TAKE)
#define ZC2 0
#define ZC3 1
#else
#define ZC2 0
#define ZC3 0
#endif
#ifdef ABORT
#define ABORTING 1
#else
#define ABORTING 0
#endif
/* HOLDWAKE: a side all of whose blockers are holds relies on finish()'s
 * wake-up, never on a short slice's timeout: the consumers when every
 * producer reserves (RESERVEALL), the producers when every consumer takes
 * (TAKEALL). Without SHUTDOWN (E4 gives a claim up without a wake check)
 * and without skipped slots on the producers' side (take releases a skipped
 * slot before the message without one). Only crashes (idleSlice, the
 * recovery timeout) and IDLETIMEOUT still let a slice time out. */
#if defined(HOLDWAKE) && defined(RESERVEALL)
#define SHORTTO_CONS 0
#else
#define SHORTTO_CONS 1
#endif
#if defined(HOLDWAKE) && defined(TAKEALL)
#define SHORTTO_PROD 0
#else
#define SHORTTO_PROD 1
#endif
#define SHORTTO(side) ((side) == CONS -> SHORTTO_CONS : SHORTTO_PROD)

#ifdef REDELIVER
#define REDELIVERING 1
#else
#define REDELIVERING 0
#endif

/* A crash (the process stops forever) may come before every step that
 * writes shared memory (a crash before a pure load is the same as a crash
 * after it, before the next write). At most one crash per run: init picks
 * the one process that may crash (or none); its crashable flag is local,
 * so that the choice costs partial-order reduction nothing. */
#if MAXCRASH > 0
#define W(s)  if :: crashable -> goto crash :: atomic { s } fi
#else
#define W(s)  atomic { s }
#endif

/* kick(s) (ring.go): futex[s].Add(1), then FUTEX_WAKE of every waiter */
/* stale[a] is read only between a's sample and its futex wait (insample[a]):
 * outside that window it is dead, and kept 0 so that states that differ
 * only in a dead bit are one state */
#define FADD(a, b)  if :: insample[a] && !inwait[a] -> stale[a] = 1 :: else -> skip fi; \
                    if :: insample[b] && !inwait[b] -> stale[b] = 1 :: else -> skip fi
#define FWAKE(a, b) inwait[a] = 0; inwait[b] = 0
inline kick(s) {
	if
	:: s == CONS -> W(FADD(2, 3));  /* kick: futex[consumers].Add(1) */
	                W(FWAKE(2, 3))  /* kick: FUTEX_WAKE notEmpty */
	:: else ->      W(FADD(0, 1));  /* kick: futex[producers].Add(1) */
	                W(FWAKE(0, 1))  /* kick: FUTEX_WAKE notFull */
	fi
}

/* zerocopy.go finish(c, seq, word, s): the hold's last step, the store of
 * its slot word (storeRelease), then c.rec.Store(recInUse) (E7 or D6: an
 * XCHG on amd64), then fence(), then the load of the other side's position
 * and, if its asleep bit is set, kick(s). The memory model is SC, which on
 * amd64 (TSO) is exact here: the store of the slot word can pass nothing
 * but later loads, and the XCHG and the fence both drain it before the
 * load. MUT_FINISH_NOFENCE is finish() with neither (fence removed and the
 * record stored with storeRelease like everywhere else): then the load may
 * be satisfied before either store is visible to others, which is modelled
 * by making the load first (the TSO store->load reordering). */
#ifndef MUT_FINISH_NOFENCE
#define FINISH(SEQSTORE, RECSTORE, abit, s) \
	W(SEQSTORE);                     /* finish: storeRelease(seq, word) (E6 / E4 / D5) */ \
	W(RECSTORE);                     /* finish: c.rec.Store(recInUse) (E7 / D6) */ \
	                                 /* finish: fence() (nothing to model under SC) */ \
	d_step { fa = abit };            /* finish: pos[s.other()].Load()&asleepBit */ \
	if :: fa -> kick(s) :: else -> skip fi;   /* finish: kick(s) */ \
	fa = 0
#else
#define FINISH(SEQSTORE, RECSTORE, abit, s) \
	d_step { fa = abit };            /* MUTANT: the load passes the buffered stores */ \
	W(SEQSTORE);                     /* finish: storeRelease(seq, word), visible only now */ \
	W(RECSTORE);                     /* finish: the record store, plain */ \
	if :: fa -> kick(s) :: else -> skip fi; \
	fa = 0
#endif

/* Entries whose records are 0 throughout the run: the admin's own (entry 4:
 * it only ever writes the record of the entry it joins, rec[NPROC]) and
 * those of processes the configuration leaves out. Their loads are pure
 * loads of a constant, left out of heldLive's scan. */
#ifdef ONEPROD
#define NOPROD1 1
#else
#define NOPROD1 0
#endif
#ifdef ONECONS
#define NOCONS3 1
#else
#define NOCONS3 0
#endif
#define UNUSED_ENTRY(j) ((j) == ADMIN || ((j) == 1 && NOPROD1) || ((j) == 3 && NOCONS3))

/* ring.go heldLive: does a live participant's record cover pos of side s?
 * one load per record, one liveness check (F_OFD_GETLK) per covering one */
inline heldLive(s, p) {
	live = 0; j = 0;
	do
	:: j < NPROC && UNUSED_ENTRY(j) -> j++          /* a record that is always 0 */
	:: j < NPROC && !UNUSED_ENTRY(j) ->
		/* heldLive: record(i,k).Load() for each record of entry j */
		d_step { cov = COVERS(rec[j], s, p) || (j == deadIdx && COVERS(rec[NPROC], s, p)) }
		if
		:: cov && j == self -> live = 1; break
		:: cov && j != self ->
#ifndef MUT_NO_LIVECHECK
			if
			:: alive[j] -> live = 1; break       /* heldLive: r.alive(i), the lock */
			:: else -> skip
			fi
#else
			skip                                 /* MUTANT: no liveness check */
#endif
		:: else -> skip
		fi;
		j++
	:: else -> break
	od;
	j = 0; cov = 0
}

/* ring.go recoverClaim(cl): R1, R2, R3; rok: changed the slot; rmsg: a
 * message to enqueue again (Config.Redeliver) */
inline recoverClaim(cs, cp, cw) {
	rok = 0; rmsg = 0;
	heldLive(cs, cp);
	if
	:: live -> skip
	:: !live && cs == PROD ->
		/* R1: ring.go recoverClaim CAS on slot seq: p -> p+1|skipped */
		W(if
		  :: seq[SLOT(cp)] == cw ->
			seq[SLOT(cp)] = SW(cp + 1, FSKIP); rok = 1;
			/* invariant 3: the claim in progress is a dead process's */
			assert(prodCl[SLOT(cp)] != 0 && crashed[prodCl[SLOT(cp)] - 1]);
			prodCl[SLOT(cp)] = 0
		  :: else -> skip
		  fi);
		if :: rok -> kick(CONS) :: else -> skip fi   /* recoverClaim: kick(consumers) */
	:: !live && cs == CONS && (!REDELIVERING || (cw & 3) != 0) ->
		/* R2: ring.go recoverClaim CAS on slot seq: p+1|flags -> p+cap */
		W(if
		  :: seq[SLOT(cp)] == cw ->
			seq[SLOT(cp)] = SW(cp + CAP, 0); rok = 1;
			assert(consCl[SLOT(cp)] != 0 && crashed[consCl[SLOT(cp)] - 1]);
			consCl[SLOT(cp)] = 0
		  :: else -> skip
		  fi);
		if :: rok -> kick(PROD) :: else -> skip fi   /* recoverClaim: kick(producers) */
	:: else ->
		/* redelivery: take the claim over as our own, attributably */
		W(rec[myrec] = REC(CONS, cp, 1));          /* recoverClaim: storeRelease(rec, recordFor(consumers, pos, 1)) */
		/* R3: CAS on slot seq: p+1 -> p+1|takeover */
		W(if
		  :: seq[SLOT(cp)] == cw ->
			seq[SLOT(cp)] = cw | FTAKE; rok = 1;
			assert(consCl[SLOT(cp)] != 0 && crashed[consCl[SLOT(cp)] - 1]);
			consCl[SLOT(cp)] = me + 1
		  :: else -> skip
		  fi);
		if
		:: !rok -> W(rec[myrec] = 0)               /* recoverClaim: storeRelease(rec, recInUse) */
		:: rok ->
			/* copy out (unless redelivered once already), then R2 by store */
			d_step { if :: !payR[SLOT(cp)] -> rmsg = pay[SLOT(cp)] :: else -> rmsg = 0 fi }
			W(seq[SLOT(cp)] = SW(cp + CAP, 0); consCl[SLOT(cp)] = 0);  /* R2 by the claim's new owner */
			W(rec[myrec] = 0);                     /* recoverClaim: storeRelease(rec, recInUse) */
			kick(PROD)
		fi
	fi;
	live = 0
}

/* ring.go heldUpBy(s): the claim that holds side s up, if any */
inline heldUpBy(s) {
	/* one atomic snapshot of the position(s) and the slot word: see
	 * README (coarsened loads) */
	atomic {
	held = 0;
	if
	:: s == CONS ->
		hp = deqPos;                                /* heldUpBy: pos[consumers].Load() */
		hw = seq[SLOT(hp)];                         /* heldUpBy: slot(d).seq.Load() */
		if
		:: hw == SW(hp, 0) ->
			held = (enqPos > hp);               /* heldUpBy: pos[producers].Load() */
			hs = PROD
		:: else -> skip
		fi
	:: else ->
		hp = enqPos;                                /* heldUpBy: pos[producers].Load() */
		if
		:: hp >= CAP ->
			hw = seq[SLOT(hp)];                 /* heldUpBy: slot(e).seq.Load() */
			hp = hp - CAP;
			if
			:: hw == SW(hp, 0) -> held = 1; hs = PROD
			:: SEQ(hw) == hp + 1 ->
				held = (deqPos > hp);       /* heldUpBy: pos[consumers].Load() */
				hs = CONS
			:: else -> skip
			fi
		:: else -> skip
		fi
	fi;
	if :: !held -> hp = 0; hw = 0; hs = 0 :: else -> skip fi
	}
}

/* stall.go checkStall(s): the claim that holds s up, and recoverClaim
 * once it has held s up for the recovery timeout. Time is not modelled:
 * for safety the timeout may or may not have passed at each check (a
 * nondeterministic choice, a superset of the code's behaviours, so the
 * memory of the claim seen last is not needed); for liveness (LIVE) it has
 * always passed (the timeout eventually passes). */
inline checkStall(s) {
	rok = 0;
	heldUpBy(s);
	if
	:: held ->
#ifndef LIVE
		if
		:: true -> skip                          /* checkStall: not held up for a timeout yet */
		:: true ->
#endif
			recoverClaim(hs, hp, hw);
			if
			:: rmsg != 0 -> enqueueAgain(rmsg)    /* checkStall: q.enqueueAgain */
			:: else -> skip
			fi
#ifndef LIVE
		fi
#endif
	:: else -> skip
	fi;
	held = 0; hp = 0; hw = 0; hs = 0; rmsg = 0
}

/* ring.go claimWrite(rec, n): E1-E4; out: res, cpos, cm */
inline claimWrite(nwant) {
	res = R_OK;
	do
	:: true ->
		/* the position and the slots it covers, as one snapshot (README:
		 * coarsened loads); after a failed CAS or a stale position the
		 * code loads the position again: the same as this loop's top */
		atomic {
		w = enqPos; wa = enqA;                      /* claimWrite: pos[producers].Load() */
		cpos = w; cm = 0;
		do
		:: cm < nwant ->
			dd = SEQ(seq[SLOT(cpos + cm)]) - (cpos + cm);  /* claimWrite: slot seq.Load() */
			if
			:: dd == 0 -> cm++
			:: dd < 0 && cm == 0 -> res = R_FULL; break
			:: else -> break
			fi
		:: else -> break
		od;
		dd = 0;
		/* a slot ahead of the position in one snapshot: corrupt (reload) */
		assert(res == R_FULL || cm > 0)
		}
		if
		:: res == R_FULL -> break
		:: else ->
#ifndef MUT_E1_AFTER_E2
			W(rec[myrec] = REC(PROD, cpos, cm));      /* E1: claimWrite storeRelease(rec, recordFor) */
#endif
			/* E2: claimWrite/enqueue1 CAS on enqueuePos (clears the asleep bit) */
			W(if
			  :: enqPos == w && enqA == wa ->
				enqPos = cpos + cm; enqA = 0; ok = 1;
				assert(prodCl[SLOT(cpos)] == 0 && consCl[SLOT(cpos)] == 0);
				prodCl[SLOT(cpos)] = me + 1;
				if
				:: cm == 2 ->
					assert(prodCl[SLOT(cpos + 1)] == 0 && consCl[SLOT(cpos + 1)] == 0);
					prodCl[SLOT(cpos + 1)] = me + 1
				:: else -> skip
				fi
			  :: else -> ok = 0                          /* CAS failed: load again (loop top) */
			  fi);
			if
			:: ok ->
#ifdef MUT_E1_AFTER_E2
				W(rec[myrec] = REC(PROD, cpos, cm));  /* MUTANT: E1 after E2 */
#endif
#ifndef MUT_NO_WAKE
				if :: wa -> kick(CONS) :: else -> skip fi;  /* E3: kick(consumers) if E2 saw the bit */
#endif
				LOADSHUT(sh);            /* E4: claimWrite shutdown.Load() */
				if
				:: sh ->
					i = 0;
					do
					:: i < cm ->
						/* E4: storeRelease(slot seq, p+1|skipped) */
						W(seq[SLOT(cpos + i)] = SW(cpos + i + 1, FSKIP); prodCl[SLOT(cpos + i)] = 0);
						i++
					:: else -> break
					od;
					i = 0;
					W(rec[myrec] = 0);                 /* E4: storeRelease(rec, recInUse) */
					res = R_CLOSED; cm = 0
				:: else -> skip
				fi;
				sh = 0; ok = 0;
				break
			:: else -> skip
			fi
		fi
	od;
	w = 0; wa = 0
}

/* ring.go enqueue(rec, msgs, flags): claimWrite, write each (E5, E6), E7.
 * base: the id of the first message; rflag: flagRedelivered; fin: this E7
 * ends the producer's last call (its bookkeeping is then done in the same
 * step: the producer touches no shared word after it) */
inline ringEnqueue(nwant, base, rflag, fin) {
	claimWrite(nwant);
	if
	:: res == R_OK ->
		i = 0;
		do
		:: i < cm ->
			/* E5 (payload, length, flags: unobservable until E6) and
			 * E6: write() storeRelease(slot seq, p+1) */
			W(assert(prodCl[SLOT(cpos + i)] == me + 1 && consCl[SLOT(cpos + i)] == 0);
			  pay[SLOT(cpos + i)] = base + i; payR[SLOT(cpos + i)] = rflag;
			  seq[SLOT(cpos + i)] = SW(cpos + i + 1, 0); prodCl[SLOT(cpos + i)] = 0);
			i++
		:: else -> break
		od;
		/* E7: enqueue storeRelease(rec, recInUse); the messages are
		 * acknowledged here (what follows until the call returns touches
		 * no shared word: a crash there is a crash after the return) */
		W(rec[myrec] = 0;
		  if :: !rflag -> i = 0; do :: i < cm -> acked[base + i] = 1; i++ :: else -> break od :: else -> skip fi;
		  PRODEND(fin));
		i = 0
	:: else -> skip
	fi
}

/* stall.go enqueueAgain: enqueue a recovered message again, marked
 * redelivered, retrying a while (redeliverWait) while the queue is full */
inline enqueueAgain(msg) {
	tries = 0;
	do
	:: true ->
		ringEnqueue(1, msg, 1, 0);
		cpos = 0; cm = 0;
		if
		:: res == R_FULL && tries < 1 -> tries++      /* full: retry within redeliverWait */
		:: else -> break                              /* done, or dropped (full, closed) */
		fi
	od;
	tries = 0; res = R_OK
}

/* ring.go claimRead(rec, bufs, max) (and dequeue1 with maxs = 1: exactly
 * one slot per claim): D1-D3; out: res, cpos, cm; ghost: the messages
 * taken go to h0, h1 */
inline claimRead(maxk, maxs) {
	res = R_OK;
	do
	:: true ->
		/* the position, the slots and (emptyAt) the producers' position,
		 * as one snapshot (README: coarsened loads) */
		atomic {
		w = deqPos; wa = deqA;                      /* claimRead: pos[consumers].Load() */
		cpos = w; cm = 0; ck = 0;
		do
		:: ck < maxk && cm < maxs ->
			c = seq[SLOT(cpos + cm)]; dd = SEQ(c) - (cpos + cm + 1);  /* claimRead: slot seq.Load() */
			if
			:: dd == 0 -> if :: !(c & FSKIP) -> ck++ :: else -> skip fi; cm++
			:: dd < 0 && cm == 0 ->
				/* emptyAt: errPending when claimed and not published */
				if
				:: c == SW(cpos, 0) && enqPos > cpos -> res = R_PEND  /* emptyAt: pos[producers].Load() */
				:: else -> res = R_FULL
				fi;
				break
			:: else -> break
			fi
		:: else -> break
		od;
		dd = 0; c = 0; ck = 0;
		assert(res != R_OK || cm > 0)               /* reload: corrupt */
		}
		if
		:: res != R_OK -> break
		:: else ->
			W(rec[myrec] = REC(CONS, cpos, cm));          /* D1: storeRelease(rec, recordFor) */
			/* D2: claimRead/dequeue1 CAS on dequeuePos (clears the asleep bit) */
			W(if
			  :: deqPos == w && deqA == wa ->
				deqPos = cpos + cm; deqA = 0; ok = 1;
				assert(prodCl[SLOT(cpos)] == 0 && consCl[SLOT(cpos)] == 0);
				consCl[SLOT(cpos)] = me + 1;
				if :: !(seq[SLOT(cpos)] & FSKIP) -> h0 = pay[SLOT(cpos)] + 64 * payR[SLOT(cpos)] :: else -> skip fi;
				if
				:: cm == 2 ->
					assert(prodCl[SLOT(cpos + 1)] == 0 && consCl[SLOT(cpos + 1)] == 0);
					consCl[SLOT(cpos + 1)] = me + 1;
					if
					:: !(seq[SLOT(cpos + 1)] & FSKIP) ->
						if
						:: h0 == 0 -> h0 = pay[SLOT(cpos + 1)] + 64 * payR[SLOT(cpos + 1)]
						:: else -> h1 = pay[SLOT(cpos + 1)] + 64 * payR[SLOT(cpos + 1)]
						fi
					:: else -> skip
					fi
				:: else -> skip
				fi
			  :: else -> ok = 0                          /* CAS failed: load again (loop top) */
			  fi);
			if
			:: ok ->
#ifndef MUT_NO_WAKE
				if :: wa -> kick(PROD) :: else -> skip fi;  /* D3: kick(producers) if D2 saw the bit */
#endif
				ok = 0;
				break
			:: else -> skip
			fi
		fi
	od;
	w = 0; wa = 0
}

/* per-producer order, as seen by consumer me. With M == 1 every sequence
 * is 1 and the assertion cannot fail (a second delivery of the same message
 * is caught by !delivered): the ghost is then left out, so that states that
 * differ only in which consumer saw a message first are one state. */
#if M > 1
#define ORDER(h) assert(MSEQ(h) > lastSeen[2 * (me - 2) + MPROD(h)]);\
					lastSeen[2 * (me - 2) + MPROD(h)] = MSEQ(h)
#else
#define ORDER(h) skip
#endif

/* the Dequeue that took h0, h1 returns them: exactly once, in order */
#define DELIVER \
			if\
			  :: h0 != 0 ->\
				assert(h0 < 64 || !delivered[h0 - 64]);\
				if\
				:: h0 < 64 ->\
					assert(!delivered[h0]); delivered[h0] = 1;\
					/* per-producer order, as seen by this consumer */\
					ORDER(h0)\
				:: else -> assert(!delivered[h0 - 64]); delivered[h0 - 64] = 1\
				fi\
			  :: else -> skip\
			  fi;\
			  if\
			  :: h1 != 0 ->\
				if\
				:: h1 < 64 ->\
					assert(!delivered[h1]); delivered[h1] = 1;\
					ORDER(h1)\
				:: else -> assert(!delivered[h1 - 64]); delivered[h1 - 64] = 1\
				fi\
			  :: else -> skip\
			  fi;\
			  h0 = 0; h1 = 0

/* ring.go dequeue / dequeue1: claim, copy out (D4), release (D5) each,
 * D6; only skipped slots: look again. out: res, nk */
inline ringDequeue(maxk, maxs) {
	do
	:: true ->
		claimRead(maxk, maxs);
		if
		:: cm == 0 -> break
		:: else -> skip
		fi;
		i = 0; nk = 0;
		do
		:: i < cm ->
			/* D4: read() (seq.Load, takeover check, copy out; the slot is
			 * ours, nobody writes it) and D5: release() storeRelease(seq, p+cap) */
			W(assert(consCl[SLOT(cpos + i)] == me + 1 && prodCl[SLOT(cpos + i)] == 0);
			  assert(!(seq[SLOT(cpos + i)] & FTAKE));
			  if
			  :: !(seq[SLOT(cpos + i)] & FSKIP) ->
				assert(pay[SLOT(cpos + i)] != 0);
				nk++
			  :: else -> skip
			  fi;
			  seq[SLOT(cpos + i)] = SW(cpos + i + CAP, 0); consCl[SLOT(cpos + i)] = 0);
			i++
		:: else -> break
		od;
		i = 0; cpos = 0; cm = 0;
		/* D6: storeRelease(rec, recInUse); the messages are delivered
		 * here (nothing shared is touched until the call returns) */
		W(rec[myrec] = 0;
		  if :: nk > 0 -> DELIVER :: else -> skip fi);
		if
		:: nk > 0 -> res = R_OK; break
		:: else -> skip                               /* only skipped slots: look again */
		fi
	od
}

/* ring.go take(rec) (zerocopy.go TryTake / Take): claimRead(rec, nil, 1)
 * (D1-D3), release the skipped slot before the message (a claim of a
 * skipped run and one slot), then narrow the record to the one position
 * still held; only skipped slots: release, clear the record, look again.
 * out: res, tpos (the position held), h0 (ghost: its message) */
inline ringTake() {
	do
	:: true ->
		claimRead(1, 2);
		if
		:: cm == 0 -> break
		:: else -> skip
		fi;
		if
		:: cm == 2 ->
			/* take: r.release(p) of the skipped slot (D5's store) */
			W(assert(consCl[SLOT(cpos)] == me + 1 && (seq[SLOT(cpos)] & FSKIP));
			  seq[SLOT(cpos)] = SW(cpos + CAP, 0); consCl[SLOT(cpos)] = 0);
			cpos++
		:: else -> skip
		fi;
		/* take: sl.seq.Load() of the last slot: our own, nobody else
		 * writes it (h0, taken at D2, says whether it is skipped) */
		if
		:: h0 == 0 ->
			/* take: release(last); storeRelease(rec, recInUse); continue */
			W(assert(consCl[SLOT(cpos)] == me + 1 && (seq[SLOT(cpos)] & FSKIP));
			  seq[SLOT(cpos)] = SW(cpos + CAP, 0); consCl[SLOT(cpos)] = 0);
			W(rec[myrec] = 0);
			cpos = 0; cm = 0
		:: h0 != 0 && cm == 2 ->
			/* take: storeRelease(rec, recordFor(consumers, last, 1)) */
			W(assert(!(seq[SLOT(cpos)] & FTAKE)); rec[myrec] = REC(CONS, cpos, 1));
			tpos = cpos; cpos = 0; cm = 0; res = R_OK; break
		:: h0 != 0 && cm == 1 ->
			/* the record already names exactly this position */
			tpos = cpos; cpos = 0; cm = 0; res = R_OK; break
		fi
	od
}

/* zerocopy.go Taken.Release: finish with seq p+cap (D5), the record (D6).
 * The message is delivered here (Take returned it; a consumer that dies
 * holding it has taken it: lostok, as for a Dequeue). */
inline releaseHold() {
	FINISH(assert(consCl[SLOT(tpos)] == me + 1 && prodCl[SLOT(tpos)] == 0);
	       assert(!(seq[SLOT(tpos)] & FTAKE) && pay[SLOT(tpos)] != 0);
	       seq[SLOT(tpos)] = SW(tpos + CAP, 0); consCl[SLOT(tpos)] = 0,
	       rec[myrec] = 0; DELIVER,
	       deqA, PROD);
	tpos = 0
}

/* the futex wait of wait.go sleep(): sleep until the word differs from
 * the sampled value, a FUTEX_WAKE, or the slice times out (only a short
 * slice, unless idle timeouts are modelled); or the context is cancelled */
#define TIMEOUTOK(shortS) ((shortS) || IDLE_TIMEOUTS || crashes > 0)
#define CANCELLED (CTXCANCEL && ALLDONE)
inline futexWait(shortS) {
	if
	:: d_step { stale[me] && !CANCELLED -> stale[me] = 0; insample[me] = 0 }  /* FUTEX_WAIT(v): EAGAIN, the word moved */
	:: d_step { !stale[me] && TIMEOUTOK(shortS) && !CANCELLED -> insample[me] = 0 }
		/* queued, then the slice times out: one step, as a FUTEX_WAKE
		 * before the timeout is the same to this process (its stale and
		 * inwait bits are dead until its next sample, see FADD) */
	:: atomic { !stale[me] && !TIMEOUTOK(shortS) && !CANCELLED -> inwait[me] = 1 };  /* FUTEX_WAIT(v): queued */
		if
		:: d_step { !inwait[me] -> insample[me] = 0 }            /* woken by FUTEX_WAKE */
		:: d_step { inwait[me] && TIMEOUTOK(shortS) && !CANCELLED -> inwait[me] = 0; insample[me] = 0 }  /* timed out (a crash since) */
		:: atomic { CANCELLED -> inwait[me] = 0; insample[me] = 0; res = R_CANCEL; nended++; counted = 1 }  /* ctx done (AfterFunc kicks); the consumer ends (bookkeeping) */
		fi
	:: atomic { CANCELLED -> stale[me] = 0; insample[me] = 0; res = R_CANCEL; nended++; counted = 1 }  /* ctx done */
	fi
}

/* wait.go sleep(): retry; sample the futex word; S1; retry; decide the
 * slice; futex wait. try(stalls) is the inline TRY(stalls) of the caller. */
#ifndef MUT_S1_AFTER_RETRY
#define ANNOUNCE_THEN_RETRY(side, otherpos, otherbit) \
		W(other = otherpos; otherbit = 1);   /* S1: announce, atomic OR of the asleep bit */ \
		TRY(0);                              /* sleep: try(false) after S1 */
#else
#define ANNOUNCE_THEN_RETRY(side, otherpos, otherbit) \
		TRY(0);                              /* MUTANT: the retry before S1 */ \
		if :: res == R_RETRY -> W(other = otherpos; otherbit = 1) :: else -> skip fi;
#endif

#ifndef MUT_NO_CLAIMBEFORE
#define CB_CONS  d_step { cb = (other > deqPos) }      /* claimBefore(consumers): pos[consumers].Load() */
#define CB_PROD  d_step { cb = (enqPos >= CAP && other > enqPos - CAP) }  /* claimBefore(producers) */
#else
#define CB_CONS  cb = 0
#define CB_PROD  cb = 0
#endif

/* the slice: short if held up (heldUpBy) or if a claim predates S1
 * (claimBefore). When every slice may time out, which one it is does not
 * matter to the model, and the loads are left out. */
#if IDLE_TIMEOUTS
#define DECIDE_SLICE(side, CB) sshort = 1; other = 0
#else
#define DECIDE_SLICE(side, CB) \
		heldUpBy(side);                      /* sleep: r.heldUpBy(side) */ \
		CB;                                  /* sleep: r.claimBefore(side, other) */ \
		sshort = held || cb; held = 0; hp = 0; hw = 0; hs = 0; cb = 0; other = 0
#endif

#define SLEEP_LOOP(side, otherpos, otherbit, CB) \
	do \
	:: true -> \
		TRY(1);                              /* sleep: try(true) */ \
		if :: res != R_RETRY -> break :: else -> skip fi; \
		d_step { stale[me] = 0; insample[me] = 1 };  /* sleep: v := futex[side].Load() */ \
		ANNOUNCE_THEN_RETRY(side, otherpos, otherbit) \
		if :: res != R_RETRY -> other = 0; break :: else -> skip fi; \
		DECIDE_SLICE(side, CB); \
		futexWait(sshort && SHORTTO(side));  /* sleep: futex wait on v, one slice */ \
		sshort = 0; \
		if :: res == R_CANCEL -> break :: else -> skip fi \
	od

/* zerocopy.go Reservation.Commit(n) (E5: length, flags, origin, payload;
 * then finish with seq p+1: E6) or, with ABORT, possibly Abort (finish with
 * seq p+1|skipped: consumers pass over it); both for the one position held
 * since the reservation's claim. The message is acknowledged at the record
 * store (Commit returns with nothing shared in between). */
inline commitHold(base) {
	if
	:: ABORTING -> ab = 1                           /* Reservation.Abort */
	:: true -> ab = 0                               /* Reservation.Commit */
	fi;
	FINISH(assert(prodCl[SLOT(hpos)] == me + 1 && consCl[SLOT(hpos)] == 0);
	       if
	       :: !ab -> pay[SLOT(hpos)] = base; payR[SLOT(hpos)] = 0; seq[SLOT(hpos)] = SW(hpos + 1, 0)  /* Commit: E5, E6 */
	       :: else -> seq[SLOT(hpos)] = SW(hpos + 1, FSKIP)  /* Abort: E4's word */
	       fi;
	       prodCl[SLOT(hpos)] = 0,
	       rec[myrec] = 0; if :: !ab -> acked[base] = 1 :: else -> skip fi,
	       enqA, CONS);
	hpos = 0; ab = 0
}

/* ---------------- producers ---------------- */

/* mpmc.go enqueueSome(rec, msgs[done:]) then, with stalls, checkStall and
 * once more (enqueueStalls); the block() try: ErrFull -> errRetry */
#define TRY(stalls) \
	again = 0; \
	do \
	:: true -> \
		LOADSHUT(sh);             /* enqueueSome: shutdown.Load() */ \
		if \
		:: sh -> res = R_CLOSED \
		:: else -> \
			do \
			:: ndone < ncall && zc -> \
				/* zerocopy.go reserve: claimWrite(rec, 1) (E1-E4), the claim then held */ \
				claimWrite(1); \
				if :: res == R_OK -> hpos = cpos; ndone = 1 :: else -> skip fi; \
				break \
			:: ndone < ncall && !zc -> \
				rem = ncall - ndone; \
				ringEnqueue(rem, MSGID(me, next + ndone), 0, (ndone + cm == ncall && next + ncall > M)); \
				if :: res == R_OK -> ndone = ndone + cm :: else -> skip fi; \
				if \
				:: res != R_OK -> break \
				:: res == R_OK && cm < rem -> res = R_FULL; break  /* the claim stopped short: full */ \
				:: else -> skip \
				fi \
			:: else -> break \
			od; \
			cpos = 0; cm = 0; rem = 0 \
		fi; \
		sh = 0; \
		if \
		:: res == R_FULL && stalls && !again -> \
			again = 1; checkStall(PROD);          /* enqueueStalls: checkStall(producers) */ \
			if :: rok -> rok = 0 :: else -> break fi \
		:: else -> break \
		fi \
	od; \
	again = 0; \
	if :: res == R_FULL -> res = R_RETRY :: else -> skip fi

proctype Producer(byte me; bit batch; bit crashable; bit zc) {
	byte self = me, myrec = me;
	byte next = 1, ncall, ndone, rem, i, j, w, cpos, cm, tries, rmsg, other, hpos;
	bit wa, ok, sh, again, live, cov, held, cb, sshort, rok, counted, fa, ab;
	byte hp, hw, hs;
	int dd;
	byte res;

	do
	:: next > M -> break
	:: else ->
		/* Enqueue (or EnqueueBatch of 2 for the first two of a batch
		 * producer; or, zc, Reserve: zerocopy.go holdFor, the same
		 * try / checkStall / sleep structure) */
		if :: batch && next == 1 -> ncall = 2 :: else -> ncall = 1 fi;
		ndone = 0;
		SLEEP_LOOP(PROD, deqPos, deqA, CB_PROD);
		if
		:: res == R_OK && zc ->
			/* the reservation is held: any number of steps of the
			 * others may come before Commit (the process may be
			 * slow, or crash: W's crash points below) */
			commitHold(MSGID(me, next));
			next = next + ncall
		:: res == R_OK && !zc -> next = next + ncall
		:: else -> break                              /* ErrClosed */
		fi;
		ncall = 0; ndone = 0; res = R_OK
	od;
	if
	:: counted -> skip                            /* ended at its last E7 (PRODEND) */
	:: else -> atomic { pdone[me] = 1; nended++ }  /* this process has ended */
	fi;
	goto fin;
crash:
	atomic { crashes++; crashed[me] = 1; alive[me] = 0; deadIdx = me; inwait[me] = 0; stale[me] = 0; insample[me] = 0; pdone[me] = 1; nended++ }
fin:
	skip
}
#undef TRY

/* ---------------- consumers ---------------- */

/* mpmc.go dequeueSome: the shutdown flag before looking (invariant 6);
 * with stalls, checkStall and once more (dequeueStalls); ErrEmpty -> errRetry */
#ifndef MUT_SHUT_AFTER
#define SHUT_BEFORE LOADSHUT(sh)   /* dequeueSome: shutdown.Load() before looking */
#define SHUT_AFTER  skip
#else
#define SHUT_BEFORE skip
#define SHUT_AFTER  LOADSHUT(sh)   /* MUTANT: shutdown.Load() after looking */
#endif
#define TRY(stalls) \
	again = 0; \
	do \
	:: true -> \
		SHUT_BEFORE; \
		if :: zc -> ringTake() :: else -> ringDequeue(maxk, maxs) fi; \
		SHUT_AFTER; \
		if \
		:: res == R_PEND -> res = R_FULL \
		:: res == R_FULL && sh -> res = R_CLOSED \
		:: else -> skip \
		fi; \
		sh = 0; \
		if \
		:: res == R_FULL && stalls && !again -> \
			again = 1; checkStall(CONS);          /* dequeueStalls: checkStall(consumers) */ \
			if :: rok -> rok = 0 :: else -> break fi \
		:: else -> break \
		fi \
	od; \
	again = 0; \
	if :: res == R_FULL -> res = R_RETRY :: else -> skip fi

proctype Consumer(byte me; byte maxk; byte maxs; bit crashable; bit zc) {
	byte self = me, myrec = me;
	byte i, j, w, cpos, cm, ck, c, nk, h0, h1, tries, rmsg, other, tpos;
	bit wa, ok, sh, again, live, cov, held, cb, sshort, rok, counted, fa, ab;
	byte hp, hw, hs;
	int dd;
	byte res;

	do
	:: atomic { CTXCANCEL && ALLDONE -> nended++; counted = 1 }; break  /* the application is done; the consumer ends (bookkeeping) */
	:: else ->
		/* Dequeue (DequeueBatch when maxk == 2) */
		SLEEP_LOOP(CONS, enqPos, enqA, CB_CONS);
		if
		:: res == R_OK && zc -> releaseHold()          /* held: any number of steps of the others first */
		:: res == R_OK && !zc -> skip                 /* delivered at D6 */
		:: else -> break                              /* ErrClosed, or ctx done */
		fi
	od;
	if :: !counted -> nended++ :: else -> skip fi;  /* this process has ended */
	goto fin;
crash:
	atomic {
		crashes++; crashed[me] = 1; alive[me] = 0; deadIdx = me; inwait[me] = 0; stale[me] = 0; insample[me] = 0;
		/* taken and not returned: lost, accounted for */
		if :: h0 != 0 -> lostok[h0 % 64] = 1 :: else -> skip fi;
		if :: h1 != 0 -> lostok[h1 % 64] = 1 :: else -> skip fi;
		nended++                                  /* this process has ended */
	}
fin:
	skip
}
#undef TRY

/* ---------------- the admin: Shutdown, join, recoverAll ---------------- */

#ifdef SHUTDOWN
#define SHUT_DONE didShut
#else
#define SHUT_DONE true
#endif
proctype Admin() {
	byte me = ADMIN;
	byte self = ADMIN;
	byte myrec = NPROC;                               /* after join: the record it takes (takeRecord) */
	bit crashable = 0;
	byte i, j, w, cpos, cm, tries, rmsg, p, e, d, c, a0, a1, other;
	bit wa, ok, sh, live, cov, rok, didShut, didJoin, counted;
	int dd;
	byte res;

	do
#ifdef SHUTDOWN
	:: !didShut ->
		/* mpmc.go Shutdown: store the flag, then wake both sides */
		W(shutdown = 1);                              /* Shutdown: shutdown.Store(1) */
		kick(CONS); kick(PROD);                        /* Shutdown: kick(consumers), kick(producers) */
		didShut = 1
#endif
#ifdef JOIN
	:: !didJoin && crashes > 0 ->
		didJoin = 1;
		/* participants.go join: lock the dead entry, clear its records */
		self = deadIdx;
		W(alive[self] = 1);                           /* join: lockParticipant (the kernel lock) */
#ifndef MUT_JOIN_NOCLEAR
		W(rec[self] = 0; rec[NPROC] = 0);              /* join: record(i,k).Store(0), every record of the entry */
#endif
		/* ring.go recoverAll (from Open): the lap before the head, then
		 * the claimed positions between the head and the tail */
		d_step { e = enqPos };                        /* recoverAll: pos[producers].Load() */
		d_step { d = deqPos };                        /* recoverAll: pos[consumers].Load() */
		if :: d >= CAP -> p = d - CAP :: else -> p = 0 fi;
		do
		:: p < d ->
			d_step { c = seq[SLOT(p)] };          /* recoverAll: slot(p).seq.Load() */
			if
			:: SEQ(c) == p + 1 ->
				recoverClaim(CONS, p, c);
				if
				:: rmsg != 0 && a0 == 0 -> a0 = rmsg
				:: rmsg != 0 && a0 != 0 -> a1 = rmsg
				:: else -> skip
				fi
			:: else -> skip
			fi;
			p++
		:: else -> break
		od;
		p = d;
		do
		:: p < e && p - d < CAP ->
			d_step { c = seq[SLOT(p)] };          /* recoverAll: slot(p).seq.Load() */
			if
			:: c == SW(p, 0) -> recoverClaim(PROD, p, c)
			:: else -> skip
			fi;
			p++
		:: else -> break
		od;
		p = 0; e = 0; d = 0; c = 0; rok = 0;
		/* mpmc.go recoverAll: enqueue the messages to redeliver */
		if :: a0 != 0 -> enqueueAgain(a0) :: else -> skip fi;
		if :: a1 != 0 -> enqueueAgain(a1) :: else -> skip fi;
		a0 = 0; a1 = 0;
		W(rec[myrec] = 0)                              /* recoverAll: rec.Store(0) */
		/* the new participant stays (alive, idle) */
#endif
	:: atomic { SHUT_DONE -> nended++ }; break     /* this process has ended (bookkeeping) */
	od;
	goto fin;
crash:                                                /* the admin does not crash */
	nended++;
fin:
	skip
}

init {
	byte victim = 255;                                /* the process that may crash */
#if MAXCRASH > 0 && defined(VICTIM)
	victim = VICTIM;                                  /* one run per victim (the long runs) */
#elif MAXCRASH > 0
	if
	:: victim = 255 :: victim = 0
#ifndef ONEPROD
	:: victim = 1
#endif
#ifndef ONECONS
	:: victim = 2 :: victim = 3                       /* with one consumer, its crash strands everything */
#endif
	fi;
#endif
	atomic {
		alive[0] = 1; alive[1] = 1; alive[2] = 1; alive[3] = 1; alive[4] = 1;
		seq[0] = SW(0, 0); seq[1] = SW(1, 0);
#ifdef BATCH
#define BATCHP 1
#define C2K 2
#define C2S 2                                         /* consumer 2: DequeueBatch of 2 */
#else
#define BATCHP 0
#define C2K 1
#define C2S 1                                         /* consumer 2: dequeue1 (TryDequeue's path) */
#endif
		run Producer(0, BATCHP, victim == 0, ZC0);    /* EnqueueBatch of 2 first, with BATCH */
#ifndef ONEPROD
		run Producer(1, 0, victim == 1, ZC1);
#else
		pdone[1] = 1;
#endif
		run Consumer(2, C2K, C2S, victim == 2, ZC2);
#ifndef ONECONS
		run Consumer(3, 1, 2, victim == 3, ZC3);      /* dequeue via claimRead(max 1), or Take */
#endif
		run Admin();
		nstarted = 5;
#ifdef ONEPROD
		nstarted--;
#endif
#ifdef ONECONS
		nstarted--;
#endif
		skip
	}
	(nended == nstarted);                             /* every process has ended */
	/* every acknowledged message delivered exactly once, or lost to a
	 * consumer that died holding it (and not redelivered) */
	d_step {
		assert(ALLDONE);
		finished = 1
	}
}

#ifdef LIVE
/* no wedge: every run ends, every live participant finishing its work */
ltl live { <> finished }
#endif
