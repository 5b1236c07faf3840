package oracle

// knownFailure is a case where kiln's image differs from BuildKit's today,
// with the lane (the engineer's area) that owns the fix.
type knownFailure struct {
	reason string // what differs, in one line
	lane   string // "copy", "config", … (who fixes it)
	// only, when set, limits what may differ: every difference must
	// mention one of these (e.g. "History:"), so that the rest of the
	// case still guards against new differences.
	only []string
}

// known is the single table of expected differences. A case listed here
// that differs is logged, not failed; one that now agrees is logged as
// "now passes: remove from known list". Any other difference fails.
// "(issue 8 #N)" names the item of issue 8's list; "new" marks what the
// suite found beyond it.
var known = map[string]knownFailure{
	// COPY (issue 8 #10): kiln follows current BuildKit here: since fsutil
	// 183e7fb (2025) a numeric --chmod also gives the directories COPY creates their mode;
	// dockerd 20.10's BuildKit makes them 0755.
	"copy-chmod-dir":         {"COPY --chmod=0750 dir /d/ gives the /d it creates 0750 as current BuildKit does; 20.10 gives 0755", "copy", []string{"/d:"}},
	"copy-chmod-scratch-dir": {"FROM scratch COPY --chmod=0700 d /dest/ gives /dest 0700 as current BuildKit does; 20.10 gives 0755", "copy", []string{"/dest:"}},
}
