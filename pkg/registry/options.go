package registry

import (
	"net"
	"strings"
	"time"

	"github.com/kiln-build/kiln/pkg/policy"
	"github.com/kiln-build/kiln/pkg/progress"
)

// Options configures how kiln reaches registries. The zero value is usable:
// default retries and parallelism, credentials from the usual podman and
// docker files, TLS verification for everything but loopback registries.
type Options struct {
	// AuthFile is the --authfile flag. When empty, $REGISTRY_AUTH_FILE is
	// used. It is searched first for credentials and is where Login stores
	// them.
	AuthFile string
	// Insecure lists registries (host or host:port, or a CIDR such as
	// 10.0.0.0/8) reached over plain HTTP or without TLS verification, like
	// --insecure-registry. A bare host matches every port of that host.
	Insecure []string
	// TLSVerify is --tls-verify. nil keeps the default: verify certificates,
	// except that loopback registries (localhost, 127.0.0.0/8, ::1) may be
	// reached over plain HTTP like docker does. A pointer to false disables
	// verification and allows plain HTTP for every registry. A pointer to
	// true requires verified HTTPS everywhere, loopback and Insecure
	// registries included.
	TLSVerify *bool
	// CertDir holds extra CA certificates (*.crt) trusted for TLS and an
	// optional client certificate (*.cert with the matching *.key), like
	// podman's --cert-dir. SSL_CERT_FILE and SSL_CERT_DIR are honoured by
	// Go's system pool already.
	CertDir string
	// Retries bounds the retries with backoff of a request that failed with
	// 408, 429 or 5xx, a connection reset or a timeout: 0 means 3, a
	// negative value means none.
	Retries int
	// RetryDelay is the first backoff delay; each retry doubles it (with
	// jitter) up to 30s. 0 means 500ms.
	RetryDelay time.Duration
	// Jobs is the number of parallel blob transfers (0 means 4).
	Jobs int
	// StallTimeout bounds how long a request may make no progress: no
	// answer after the request was sent, no byte of a response body read,
	// no byte of an upload taken by the registry. A stalled request fails
	// with a timeout, which is retried like a reset (downloads resume where
	// they stopped). 0 means 2 minutes; negative means no limit.
	StallTimeout time.Duration
	// UserAgent is sent with every request (default "kiln").
	UserAgent string
	// Stats, when set, counts the traffic of every operation that uses
	// these Options.
	Stats *Stats
	// Mirrors are Docker Hub mirrors (--registry-mirror URL), tried in
	// order before Docker Hub itself for everything read from Docker Hub:
	// manifests, configs and layers of pulls and builds, and the sources of
	// copies. "https://mirror.example.com", "mirror.example.com:5000" and
	// "http://10.0.0.5:5000" are accepted; a failing mirror falls back to
	// the next and finally to Docker Hub. Pushes never go to a mirror.
	Mirrors []string
	// Credentials, when set, are used for the registries they name before
	// any auth file is read (--creds, --src-creds, --dest-creds).
	Credentials []Credential
	// Progress, when set, receives an event for every blob and manifest
	// that Write, Copy and pulls transfer, skip or mount.
	Progress progress.Reporter
	// MaxManifestSize bounds a manifest or index read from a registry
	// (--max-manifest-size; 0 means DefaultMaxManifestSize).
	MaxManifestSize int64
	// MaxConfigSize bounds an image config read from a registry: a larger
	// one (by the size its manifest declares) is refused before it is
	// fetched (--max-config-size; 0 means DefaultMaxConfigSize).
	MaxConfigSize int64
	// Policy, when set, is asked before the first request of every read
	// and write (pkg/policy): a refusal is the error and nothing is sent.
	Policy *policy.Policy
	// VerifySignatures checks the signatures the policy's sigstoreSigned
	// requirements ask for; without it such images are refused.
	VerifySignatures SignatureVerifier
}

// Size limits on what a registry sends before it can be verified. A
// registry (CNCF distribution) refuses to store a manifest over 4 MiB, so
// no manifest it serves is larger; containerd and BuildKit read manifests
// and indexes with the same 4 MiB bound. Configs are bounded by what a
// store would hold of a real image: the largest seen are a few hundred KiB
// (long histories, many labels), 16 MiB leaves room for 50 times that and
// keeps a hostile 600 MB config from ever being read.
const (
	DefaultMaxManifestSize = 4 << 20
	DefaultMaxConfigSize   = 16 << 20
)

func (o Options) maxManifestSize() int64 {
	if o.MaxManifestSize > 0 {
		return o.MaxManifestSize
	}
	return DefaultMaxManifestSize
}

func (o Options) maxConfigSize() int64 {
	if o.MaxConfigSize > 0 {
		return o.MaxConfigSize
	}
	return DefaultMaxConfigSize
}

// Credential is a username and password for one registry, given on the
// command line rather than read from an auth file.
type Credential struct {
	// Registry is the host[:port] (Docker Hub's aliases are one registry);
	// empty means every registry of the operation.
	Registry string
	Username string
	Password string
}

// ParseCredential parses --creds "USER[:PASSWORD]" for registry; the
// password may contain ':'. The error never repeats the value.
func ParseCredential(registry, s string) (Credential, error) {
	user, pass, _ := strings.Cut(s, ":")
	if user == "" {
		return Credential{}, errInvalidCreds
	}
	return Credential{Registry: registry, Username: user, Password: pass}, nil
}

const (
	defaultRetries    = 3
	defaultRetryDelay = 500 * time.Millisecond
	maxRetryDelay     = 30 * time.Second
	defaultJobs       = 4
	defaultUserAgent  = "kiln"
)

func (o Options) retries() int {
	switch {
	case o.Retries == 0:
		return defaultRetries
	case o.Retries < 0:
		return 0
	default:
		return o.Retries
	}
}

func (o Options) retryDelay() time.Duration {
	if o.RetryDelay <= 0 {
		return defaultRetryDelay
	}
	return o.RetryDelay
}

const defaultStallTimeout = 2 * time.Minute

func (o Options) stallTimeout() time.Duration {
	switch {
	case o.StallTimeout == 0:
		return defaultStallTimeout
	case o.StallTimeout < 0:
		return 0
	default:
		return o.StallTimeout
	}
}

func (o Options) jobs() int {
	if o.Jobs <= 0 {
		return defaultJobs
	}
	return o.Jobs
}

func (o Options) userAgent() string {
	if o.UserAgent == "" {
		return defaultUserAgent
	}
	return o.UserAgent
}

// verifyForced reports whether TLS verification was explicitly requested.
func (o Options) verifyForced() bool { return o.TLSVerify != nil && *o.TLSVerify }

// verifyDisabled reports whether TLS verification was explicitly disabled.
func (o Options) verifyDisabled() bool { return o.TLSVerify != nil && !*o.TLSVerify }

// isInsecureListed reports whether host (host or host:port) is listed in
// o.Insecure, or verification is disabled altogether.
func (o Options) isInsecureListed(host string) bool {
	if o.verifyForced() {
		return false
	}
	if o.verifyDisabled() {
		return true
	}
	host = strings.ToLower(host)
	hostname := hostOnly(host)
	for _, e := range o.Insecure {
		e = strings.ToLower(strings.TrimSpace(e))
		e = strings.TrimPrefix(strings.TrimPrefix(e, "http://"), "https://")
		e = strings.TrimSuffix(e, "/")
		if e == "" {
			continue
		}
		if e == host || e == hostname {
			return true
		}
		if _, cidr, err := net.ParseCIDR(e); err == nil {
			if ip := net.ParseIP(strings.Trim(hostname, "[]")); ip != nil && cidr.Contains(ip) {
				return true
			}
		}
	}
	return false
}

// allowsPlainHTTP reports whether the registry at host may be reached over
// plain HTTP: loopback by default, listed insecure registries, or every
// registry when verification is disabled.
func (o Options) allowsPlainHTTP(host string) bool {
	if o.verifyForced() {
		return false
	}
	return isLoopback(host) || o.isInsecureListed(host)
}

// hostOnly strips the port from host:port (keeping IPv6 brackets off).
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}

// isLoopback reports whether host (with or without port) is localhost or a
// loopback address.
func isLoopback(host string) bool {
	h := strings.ToLower(hostOnly(host))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
