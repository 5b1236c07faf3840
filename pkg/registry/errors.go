package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Kinds of registry failure. Errors returned by this package match one of
// them with errors.Is when the failure is of that kind.
var (
	// ErrUnauthorized: the registry refused the credentials, or wants some
	// and none were found (HTTP 401/403).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrManifestUnknown: no manifest for this tag or digest.
	ErrManifestUnknown = errors.New("manifest unknown")
	// ErrNameUnknown: the repository does not exist.
	ErrNameUnknown = errors.New("name unknown")
	// ErrRateLimited: the registry answered 429 Too Many Requests (after
	// the retries).
	ErrRateLimited = errors.New("rate limited")
	// ErrUnreachable: the registry could not be reached (DNS, refused
	// connection, TLS failure, timeout).
	ErrUnreachable = errors.New("registry unreachable")
	// ErrNoPlatform: an index has no image for the requested platform.
	ErrNoPlatform = errors.New("no matching platform")
	// ErrTagImmutable: the repository refuses to move an existing tag (ECR's
	// immutable tags, Harbor's immutability rules).
	ErrTagImmutable = errors.New("tag immutable")
	// ErrUnsupportedMediaType: the registry does not accept a manifest's
	// media type, or kiln cannot use what a reference names.
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	// ErrDigestMismatch: content did not match its digest; it is never
	// accepted.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrBlobUnknown: a blob is in none of the places kiln may read it from.
	ErrBlobUnknown = errors.New("blob unknown")
)

// errInvalidCreds is ParseCredential's error; it never shows the value.
var errInvalidCreds = errors.New("invalid credentials: want USERNAME[:PASSWORD]")

// Error is a registry failure with a message meant for people. It unwraps
// to its kind (one of the Err* values, if any) and to the underlying error.
type Error struct {
	// Kind is one of the Err* values, or nil.
	Kind error
	// Registry is the registry host the failure concerns.
	Registry string
	msg      string
	err      error
}

// Error implements error.
func (e *Error) Error() string { return e.msg }

// Unwrap returns the kind and the underlying error.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

// describeErr turns an error of an operation on repo into a clear message.
// what names the object ("127.0.0.1:5000/app:1.0"). The credential source
// is looked up again for unauthorized errors to say which one was tried.
func (c *Client) describeErr(ctx context.Context, what string, repo name.Repository, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	host := repo.RegistryStr()
	shown := displayHost(host)
	var secrets []string
	mk := func(kind error, msg string) error {
		return &Error{Kind: kind, Registry: host, msg: redact(msg, secrets), err: err}
	}
	if ctxErr := ctx.Err(); ctxErr != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return mk(nil, fmt.Sprintf("%s: %v", what, ctxErr))
	}

	// A TLS failure first: when the ping's HTTPS attempt failed on the
	// certificate and the plain-HTTP fallback got a 400, the former is the
	// story.
	if isCertError(err) {
		return mk(ErrUnreachable, fmt.Sprintf("%s: cannot reach registry %s: %s", what, shown, unreachableReason(err)))
	}

	var te *transport.Error
	if errors.As(err, &te) {
		switch {
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden ||
			hasCode(te, transport.UnauthorizedErrorCode) || hasCode(te, transport.DeniedErrorCode):
			cred, lerr := c.keychain.lookup(ctx, repo)
			var why string
			switch {
			case lerr != nil:
				why = fmt.Sprintf("credential lookup for %s failed: %v", shown, lerr)
			case cred == nil:
				why = fmt.Sprintf("no credentials found for %s %s(log in with `kiln login %s`; the repository may also not exist)", shown, c.o.searchedFiles(), shown)
			default:
				secrets = []string{cred.cfg.Password, cred.cfg.IdentityToken, cred.cfg.RegistryToken, cred.cfg.Auth}
				if te.StatusCode == http.StatusForbidden || hasCode(te, transport.DeniedErrorCode) {
					why = fmt.Sprintf("access denied to %s for credentials from %s", repo.RepositoryStr(), cred.source)
				} else {
					why = fmt.Sprintf("credentials from %s were rejected by %s", cred.source, shown)
				}
			}
			return mk(ErrUnauthorized, fmt.Sprintf("%s: unauthorized: %s%s", what, why, registrySaid(te)))
		case hasCode(te, transport.ManifestUnknownErrorCode) ||
			(te.StatusCode == http.StatusNotFound && te.Request != nil && strings.Contains(te.Request.URL.Path, "/manifests/")):
			return mk(ErrManifestUnknown, fmt.Sprintf("%s: manifest unknown", what))
		case hasCode(te, transport.NameUnknownErrorCode):
			return mk(ErrNameUnknown, fmt.Sprintf("%s: name unknown: repository %s not found on %s", what, repo.RepositoryStr(), shown))
		case te.StatusCode == http.StatusTooManyRequests || hasCode(te, transport.TooManyRequestsErrorCode):
			return mk(ErrRateLimited, fmt.Sprintf("%s: rate limited by %s (429 Too Many Requests, %d retries exhausted)%s", what, shown, c.o.retries(), registrySaid(te)))
		case isTagImmutable(te):
			return mk(ErrTagImmutable, fmt.Sprintf("%s: the tag already exists and repository %s does not allow tags to be overwritten (immutable tags); push a new tag instead%s",
				what, repo.Name(), registrySaid(te)))
		case te.StatusCode == http.StatusUnsupportedMediaType || hasCode(te, transport.UnsupportedErrorCode) || isMediaTypeRefusal(te):
			return mk(ErrUnsupportedMediaType, fmt.Sprintf("%s: %s does not accept this manifest's media type (try --format docker for Docker media types)%s", what, shown, registrySaid(te)))
		case hasCode(te, transport.ManifestBlobUnknownErrorCode):
			return mk(ErrBlobUnknown, fmt.Sprintf("%s: the registry is missing a blob the manifest references%s", what, registrySaid(te)))
		case hasCode(te, transport.DigestInvalidErrorCode):
			return mk(ErrDigestMismatch, fmt.Sprintf("%s: the registry found that the uploaded content does not match its digest%s", what, registrySaid(te)))
		}
		return mk(nil, fmt.Sprintf("%s: %v", what, te))
	}

	if reach := unreachableReason(err); reach != "" {
		return mk(ErrUnreachable, fmt.Sprintf("%s: cannot reach registry %s: %s", what, shown, reach))
	}
	return mk(nil, fmt.Sprintf("%s: %v", what, err))
}

// searchedFiles says which auth files were searched, for messages, and
// points out an --authfile that does not exist.
func (o Options) searchedFiles() string {
	var existing []string
	for _, f := range o.authFiles() {
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		}
	}
	var s string
	if len(existing) == 0 {
		s = "in any auth file "
	} else {
		s = "in " + strings.Join(existing, ", ") + " "
	}
	if f := o.explicitAuthFile(); f != "" {
		if _, err := os.Stat(f); err != nil {
			s += fmt.Sprintf("(auth file %s does not exist) ", f)
		}
	}
	return s
}

// isTagImmutable recognises a refused tag overwrite: ECR answers 400
// TAG_INVALID naming ImageTagAlreadyExistsException or an immutable
// repository; Harbor and others say "immutable".
func isTagImmutable(te *transport.Error) bool {
	text := strings.ToLower(te.Error())
	if strings.Contains(text, "imagetagalreadyexistsexception") {
		return true
	}
	if te.StatusCode == http.StatusBadRequest || te.StatusCode == http.StatusConflict ||
		te.StatusCode == http.StatusPreconditionFailed || te.StatusCode == http.StatusForbidden {
		if hasCode(te, transport.TagInvalidErrorCode) && (strings.Contains(text, "already exists") || strings.Contains(text, "immutable")) {
			return true
		}
		return strings.Contains(text, "immutable") && strings.Contains(text, "tag")
	}
	return false
}

// isMediaTypeRefusal recognises a manifest refused for its media type.
func isMediaTypeRefusal(te *transport.Error) bool {
	if !hasCode(te, transport.ManifestInvalidErrorCode) {
		return false
	}
	text := strings.ToLower(te.Error())
	return strings.Contains(text, "media type") || strings.Contains(text, "mediatype") || strings.Contains(text, "unsupported")
}

func hasCode(te *transport.Error, code transport.ErrorCode) bool {
	for _, d := range te.Errors {
		if d.Code == code {
			return true
		}
	}
	return false
}

// registrySaid quotes the registry's own first diagnostic message.
func registrySaid(te *transport.Error) string {
	for _, d := range te.Errors {
		if d.Message != "" {
			return fmt.Sprintf(" (registry said: %s)", firstLine(d.Message))
		}
	}
	return ""
}

// unreachableReason describes a failure to reach a registry, or returns ""
// when err is of another kind.
func unreachableReason(err error) string {
	var dnsErr *net.DNSError
	var recordErr tls.RecordHeaderError
	var opErr *net.OpError
	var ne net.Error
	msg := err.Error()
	switch {
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("cannot resolve %s: %v", dnsErr.Name, dnsErr.Err)
	case isCertError(err):
		return fmt.Sprintf("TLS certificate not trusted: %v (add its CA with --cert-dir, or use --tls-verify=false / --insecure-registry)", certDetail(err))
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"), errors.As(err, &recordErr):
		return "it speaks plain HTTP, not HTTPS (use --insecure-registry or --tls-verify=false)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("%v", innermost(err))
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return fmt.Sprintf("%v", opErr)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("timeout: %v", innermost(err))
	case errors.Is(err, syscall.ECONNRESET), strings.Contains(msg, "connection reset"):
		return "connection reset"
	}
	return ""
}

// isCertError reports whether err says a TLS certificate was not trusted.
func isCertError(err error) bool {
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostnameErr x509.HostnameError
	return errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostnameErr)
}

// certDetail is the certificate error's own text.
func certDetail(err error) error {
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return certErr.Err
	}
	var unknownAuth x509.UnknownAuthorityError
	if errors.As(err, &unknownAuth) {
		return unknownAuth
	}
	var hostnameErr x509.HostnameError
	if errors.As(err, &hostnameErr) {
		return hostnameErr
	}
	return err
}

// innermost is the deepest single wrapped error.
func innermost(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// redact replaces secrets (3 characters or longer) in msg.
func redact(msg string, secrets []string) string {
	for _, s := range secrets {
		if len(s) >= 3 {
			msg = strings.ReplaceAll(msg, s, "***")
		}
	}
	return msg
}
