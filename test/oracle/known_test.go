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
	// COPY/ADD destinations in the base (issue 8 #1).
	"copy-file-into-base-dir":                {"COPY f /usr/local/bin (a base dir, no slash) replaces the dir with a file instead of copying into it (issue 8 #1)", "copy"},
	"copy-debian-bin":                        {"Debian: COPY tool /bin/ writes through no symlink (/bin -> usr/bin) and COPY tool /usr/local/bin replaces the dir (issue 8 #1)", "copy"},
	"copy-into-symlink-parent":               {"COPY to /bin/tool with /bin -> usr/bin writes /bin/tool under the symlink instead of /usr/bin/tool (issue 8 #1)", "copy"},
	"copy-into-symlink-dir-slash":            {"COPY a /srv/dirlink/ (symlink to /opt) writes under the symlink instead of into /opt (issue 8 #1)", "copy"},
	"copy-through-relative-symlink":          {"COPY to a path under a relative symlink (../opt) is not resolved (issue 8 #1)", "copy"},
	"copy-under-lib-symlink":                 {"COPY to /lib/x/f with /lib -> usr/lib is not resolved to /usr/lib/x/f (issue 8 #1)", "copy"},
	"copy-under-var-run":                     {"COPY to /var/run/f with /var/run -> /run is not resolved to /run/f (issue 8 #1)", "copy"},
	"copy-dir-onto-symlink-dir":              {"COPY dir /app/ with /app -> /opt/app writes under the symlink instead of into /opt/app (issue 8 #1)", "copy"},
	"copy-dir-over-base-symlink-dir-noslash": {"COPY dir /srv/dirlink (symlink to a dir) writes under the symlink instead of into /opt (issue 8 #1)", "copy"},
	"copy-onto-symlink-to-file":              {"new: COPY a /srv/filelink (a symlink to a file) replaces the symlink; BuildKit writes through it to /srv/file", "copy"},
	"copy-onto-dangling-symlink":             {"new: COPY a /srv/dangling (symlink to /nowhere) replaces the symlink; BuildKit writes through it, creating /nowhere", "copy"},
	"add-url-noslash-existing-dir":           {"ADD URL /usr/local/bin (a base dir, no slash) replaces the dir with the file instead of downloading into it (issue 8 #1)", "copy"},
	"copy-from-stage-file-over-symlink":      {"COPY --from=s /s /app/ with /app -> /opt/app writes under the symlink instead of into /opt/app (issue 8 #1)", "copy"},
	"workdir-existing":                       {"new: WORKDIR /tmp rewrites the base's /tmp as 0755 (it is 1777): an existing directory must be left alone", "copy"},
	"workdir-existing-symlink":               {"new: WORKDIR /app (a symlink to /opt/app) replaces the symlink with a directory; BuildKit follows it", "copy"},

	// Parent directories' owners (issue 8 #3).
	"copy-chown-new-parents":         {"COPY --chown=app:app f /a/b/c leaves /a and /a/b root-owned, so RUN mkdir /a/b/new as app fails (issue 8 #3)", "copy"},
	"copy-chown-new-parents-scratch": {"FROM scratch: COPY --chown=1000:1000 f /x/y/z writes no /x, /x/y entries (BuildKit: 1000:1000) (issue 8 #3); also no PATH/WorkingDir (#9)", "copy"},
	"workdir-as-user":                {"WORKDIR /x/y under USER app leaves /x root-owned (BuildKit: app) (issue 8 #3)", "copy"},

	// Symlink names, wildcards, scratch modes, archives (issue 8 #7, #8, #10).
	"copy-symlink-into-dir":         {"COPY --from=s /d/link /out/ names the copy after the symlink's target, not link (issue 8 #7)", "copy"},
	"copy-symlink-context-into-dir": {"COPY link /out/ (context symlink) names the copy after its target, not link (issue 8 #7)", "copy"},
	"copy-glob-one-unmatched":       {"COPY *.txt *.none /u/ fails on the unmatched wildcard (issue 8 #8)", "copy"},
	"copy-glob-none-matched":        {"new: COPY *.none /u/ fails; BuildKit (AllowEmptyWildcard) copies nothing and succeeds even when no wildcard matches (issue 8 #8 says it errors)", "copy"},
	"copy-scratch-dir":              {"FROM scratch: COPY d /dest/ gives /dest d's mode 0700, BuildKit 0755 (issue 8 #10); also no PATH/WorkingDir (#9)", "copy"},
	"copy-chmod-dir":                {"new: COPY --chmod=0750 dir /d/ gives /d 0750; BuildKit makes the destination it creates 0755 and chmods only what it copies", "copy"},
	"copy-chmod-scratch-dir":        {"new: FROM scratch COPY --chmod=0700 d /dest/ gives /dest 0700, BuildKit 0755 (#10 says --chmod applies: it does not); also no PATH/WorkingDir (#9)", "copy"},
	"copy-dotdot-source":            {"new: COPY ../a.txt /x is refused as outside the context; BuildKit cleans the path to a.txt and copies it", "copy"},
	"copy-chown-unknown-user":       {"new: COPY --chown=nosuch is an error; BuildKit silently uses 0:0 for a name not in /etc/passwd (lead: follow or keep the error?)", "copy"},
	"copy-multi-no-slash":           {"new: COPY a b /nodir (no slash) is an error (classic builder's); BuildKit writes /nodir as a file, the last source winning (lead: follow or keep the error?)", "copy"},

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
