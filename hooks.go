package mpmc

// hookPoint names a step of an operation at which crash-point tests stop a
// process. The hooks exist only in builds with the mpmc_hooks tag
// (hooks_on.go); elsewhere hook is an empty function the compiler removes.
type hookPoint int

const (
	hookBeforeClaim          hookPoint = iota // E1 or D1 done, E2 or D2 not
	hookEnqueueClaimed                        // E2 done, nothing written
	hookEnqueueMidCopy                        // half the payload written
	hookEnqueueBeforePublish                  // payload and length written, E6 not done
	hookBatchFirstPublished                   // first message of a claim published, the rest not
	hookDequeueTaken                          // D2 done, nothing copied
	hookDequeueCopied                         // a message copied out, D5 not done
	hookJoinLocked                            // participant lock held, entry not written
	hookCreateBeforeReady                     // segment sized, header not published
)
