package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kiln-build/kiln/pkg/attest"
	"github.com/kiln-build/kiln/pkg/build"
	"github.com/kiln-build/kiln/pkg/sandbox"
)

// addCompatFlags adds the build flags of buildx and podman that CI scripts
// pass: each does what it does there, or is an error saying why not.
func addCompatFlags(fl *pflag.FlagSet, f *buildFlags) {
	fl.StringVar(&f.pull, "pull", "missing", "base images: always (docker's --pull), missing, never or newer (podman's --pull)")
	fl.Lookup("pull").NoOptDefVal = "always"
	fl.StringVar(&f.network, "network", "default", "network of RUN steps that do not set one: default, host or none")
	fl.StringVar(&f.provenance, "provenance", "", "attach SLSA provenance as buildx does: true (mode=min), mode=max (adds the Dockerfile and build args, never secrets) or false")
	fl.StringVar(&f.sbom, "sbom", "", "attach an SPDX SBOM of the image's packages as buildx does: true or false")
	fl.StringArrayVar(&f.attests, "attest", nil, "buildx's type=sbom or type=provenance[,mode=min|max][,disabled=true] (repeatable)")
	fl.Lookup("provenance").NoOptDefVal = "true"
	fl.Lookup("sbom").NoOptDefVal = "true"
	fl.StringVar(&f.builder, "builder", "", "buildx's builder instance: accepted and ignored (kiln has no builder instances)")
	fl.BoolVar(&f.layers, "layers", true, "podman's --layers: false runs every step uncached (as --no-cache)")
	fl.StringVar(&f.driver, "driver", "", "buildx's builder driver: accepted and ignored (kiln has no builder instances)")
	fl.StringArrayVar(&f.annotations, "annotation", nil, "buildx's [TYPE[,TYPE][PLATFORM]:]KEY=VALUE: an annotation of the manifests (default), the index (index:) or the index's descriptors (manifest-descriptor:) (repeatable; oci format)")
	fl.StringArrayVar(&f.addHosts, "add-host", nil, "NAME:IP added to /etc/hosts of every RUN step; NAME:host-gateway is where the step reaches the host's services (127.0.0.1 on the host's network, 10.0.2.2 on the private one) (repeatable; part of the steps' cache keys)")
	fl.StringArrayVar(&f.ulimits, "ulimit", nil, "NAME=SOFT[:HARD] resource limit of every RUN step (nofile=1024:2048; repeatable)")
	fl.StringVar(&f.shmSize, "shm-size", "", "size of /dev/shm in RUN steps (64m, 1g; default 64m)")
	fl.StringArrayVar(&f.buildContexts, "build-context", nil, "buildx's NAME=DIR|docker-image://REF|oci-layout://DIR[:TAG|@DIGEST]: what FROM NAME, COPY --from=NAME and RUN --mount from=NAME read; a stage of that name is replaced by it, as in BuildKit (repeatable)")
	fl.BoolVar(&f.squash, "squash", false, "podman's --squash: the layers the build added become one, on top of the base image's layers (history kept, all but the last entry empty; every step is still cached). docker's classic builder had it; BuildKit's docker build does not")
	fl.BoolVar(&f.squashAll, "squash-all", false, "podman's --squash-all: the whole image is one layer (the base's history entries dropped, as podman)")
	fl.StringVar(&f.creds, "creds", "", "podman's USERNAME[:PASSWORD] for every registry of the build (base images, cache, push) instead of the auth files")
}

// checkCompat validates the compatibility flags and returns the pull
// policy.
func (f *buildFlags) checkCompat(cmd *cobra.Command, g *globals) (build.PullPolicy, error) {
	stderr := g.stderr
	pull, err := build.ParsePullPolicy(f.pull)
	if err != nil {
		return "", err
	}
	if f.parsedNetwork, err = sandbox.ParseNetwork(f.network); err != nil {
		return "", fmt.Errorf("--network=%s: kiln's RUN steps have default, host or none", f.network)
	}
	if f.attestReq, err = attest.ParseRequest(f.sbom, f.provenance, f.attests); err != nil {
		return "", err
	}
	if f.builder != "" {
		fmt.Fprintf(stderr, "note: --builder %s is ignored: kiln builds in-process, without builder instances\n", f.builder)
	}
	if f.squash && f.squashAll {
		return "", fmt.Errorf("--squash and --squash-all: give one (--squash keeps the base's layers, --squash-all makes one layer of everything)")
	}
	if f.driver != "" {
		fmt.Fprintf(stderr, "note: --driver %s is ignored: kiln builds in-process, without builder instances\n", f.driver)
	}
	for _, a := range f.annotations {
		an, err := build.ParseAnnotation(a)
		if err != nil {
			return "", err
		}
		f.parsedAnnotations = append(f.parsedAnnotations, an)
	}
	if g.jobs < 1 {
		return "", fmt.Errorf("--jobs %d: want at least 1 (stages, RUN steps and transfers at once)", g.jobs)
	}
	for _, v := range f.buildContexts {
		n, nc, err := build.ParseNamedContext(v)
		if err != nil {
			return "", err
		}
		if _, dup := f.namedContexts[n]; dup {
			return "", fmt.Errorf("--build-context %s: given twice", n)
		}
		if f.namedContexts == nil {
			f.namedContexts = map[string]build.NamedContext{}
		}
		f.namedContexts[n] = nc
	}
	if err := f.parseRunExtras(); err != nil {
		return "", err
	}
	if f.creds != "" {
		c, err := g.credsOption("--creds", "", f.creds)
		if err != nil {
			return "", err
		}
		g.creds = append(g.creds, c)
	}
	if cmd.Flags().Changed("layers") && !f.layers {
		f.noCache = true
	}
	return pull, nil
}

// parseRunExtras reads --add-host, --ulimit and --shm-size.
func (f *buildFlags) parseRunExtras() error {
	for _, h := range f.addHosts {
		line, err := sandbox.ParseAddHost(h)
		if err != nil {
			return err
		}
		f.runExtras.Hosts = append(f.runExtras.Hosts, line)
	}
	for _, u := range f.ulimits {
		l, err := sandbox.ParseUlimit(u)
		if err != nil {
			return err
		}
		f.runExtras.Ulimits = append(f.runExtras.Ulimits, l)
	}
	if f.shmSize != "" {
		n, err := sandbox.ParseShmSize(f.shmSize)
		if err != nil {
			return err
		}
		f.runExtras.ShmSize = n
	}
	return nil
}

// squashMode is --squash or --squash-all as the build's option.
func (f *buildFlags) squashMode() build.Squash {
	switch {
	case f.squashAll:
		return build.SquashAll
	case f.squash:
		return build.SquashNew
	}
	return build.SquashNone
}
