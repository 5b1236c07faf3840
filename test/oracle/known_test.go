package oracle

// knownFailure is a case where kiln's image differs from BuildKit's today,
// with the lane (the engineer's area) that owns the fix.
type knownFailure struct {
	reason string // what differs, in one line
	lane   string // "copy", "config", … (who fixes it)
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
	"copy-chmod-dir":          {"COPY --chmod=0750 dir /d/ gives the /d it creates 0750 as current BuildKit does; 20.10 gives 0755", "copy"},
	"copy-chmod-scratch-dir":  {"FROM scratch COPY --chmod=0700 d /dest/ gives /dest 0700 as current BuildKit does; 20.10 gives 0755", "copy"},
	"copy-chown-unknown-user": {"new: COPY --chown=nosuch is an error; BuildKit silently uses 0:0 for a name not in /etc/passwd (lead: follow or keep the error?)", "copy"},

	// Config (issue 8 #4, #5, #6, #9, #12).
	"env-expose":                  {"EXPOSE $P 82/$PROTO: variables not expanded (issue 8 #4)", "config"},
	"user-root-nopasswd":          {"USER root in an image without /etc/passwd fails: unknown user (issue 8 #5); also no default PATH", "config"},
	"arg-name-expansion":          {"ARG ${name}=bar: the name is not expanded (issue 8 #6); also no ARG history entries", "config"},
	"arg-proxy":                   {"--build-arg HTTP_PROXY/no_proxy do not reach RUN without an ARG line (issue 8 #12)", "config"},
	"copy-scratch-file":           {"FROM scratch: no PATH in Env (issue 8 #9) and WorkingDir \"\" (BuildKit: \"/\", new)", "config"},
	"copy-scratch-nested":         {"FROM scratch: no PATH in Env (issue 8 #9) and WorkingDir \"\" (BuildKit: \"/\", new)", "config"},
	"copy-scratch-workdir":        {"FROM scratch: no PATH in Env (issue 8 #9)", "config"},
	"workdir-scratch":             {"FROM scratch: no PATH in Env (issue 8 #9)", "config"},
	"add-tar-from-scratch":        {"FROM scratch: no PATH in Env (issue 8 #9) and WorkingDir \"\" (BuildKit: \"/\", new)", "config"},
	"run-scratch-copy-then-run":   {"FROM scratch: no PATH in Env (issue 8 #9) and WorkingDir \"\" (BuildKit: \"/\", new)", "config"},
	"env-no-path-base":            {"new: a base without PATH: BuildKit adds the default PATH to Env for every stage (convert.go), not only scratch", "config"},
	"copy-chown-nopasswd-numeric": {"new: a base without PATH gets no default PATH (BuildKit adds it to every stage)", "config"},
	"run-mountpoints-base":        {"new: a base without PATH gets no default PATH (BuildKit adds it to every stage)", "config"},
	"user-numeric-nopasswd":       {"new: a base without PATH gets no default PATH (BuildKit adds it to every stage)", "config"},

	// History (new).
	"arg-before-from-scope": {"new: ARG instructions have no history entry; BuildKit commits \"ARG K=V\" as an empty_layer entry (dispatchArg)", "config"},
	"arg-empty-default":     {"new: no history entry for ARG (BuildKit: empty_layer \"ARG X\")", "config"},
	"arg-env-precedence":    {"new: no history entry for ARG (BuildKit: empty_layer \"ARG V=…\")", "config"},
	"arg-in-copy-dest":      {"new: no history entry for ARG (BuildKit: empty_layer \"ARG D=… SRC=…\")", "config"},
	"arg-label-expansion":   {"new: no history entry for ARG (BuildKit: empty_layer \"ARG VER=2.0\")", "config"},
	"arg-override":          {"new: no history entry for ARG (BuildKit: empty_layer \"ARG V=cli\")", "config"},
	"arg-per-stage":         {"new: no history entry for ARG (BuildKit: empty_layer \"ARG X=b\")", "config"},
	"arg-target-platform":   {"new: no history entry for ARG (BuildKit: empty_layer \"ARG TARGETPLATFORM=… …\")", "config"},
	"copy-chown-arg":        {"new: no history entry for ARG (BuildKit: empty_layer \"ARG OWNER=app\")", "config"},
	"env-in-run":            {"new: no history entry for ARG (BuildKit: empty_layer \"ARG A=arg\")", "config"},
	"onbuild-define":        {"new: ONBUILD gets an empty_layer history entry; BuildKit records none (dispatchOnbuild only appends to OnBuild)", "config"},
	"onbuild-from-stage":    {"new: ONBUILD gets an empty_layer history entry; BuildKit records none", "config"},
}
