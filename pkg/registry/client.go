package registry

import (
	"context"
	"net/http"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kiln-build/kiln/pkg/progress"
)

// Client is kiln's registry client: one per command (or build), made by
// New from Options. It owns what every operation shares: the transport
// (connection pools per TLS setting, retries, stall detection, traffic
// counting), the credential chain (credential helpers are run once per
// registry), the Stats and the progress reporter. It is safe for
// concurrent use.
type Client struct {
	o        Options
	keychain *keychain
	rt       http.RoundTripper
}

// New makes the client for o. A configuration error found while building
// the transport (an unreadable CertDir, say) is the error of every request
// the client sends. When o.Stats is nil the client counts into Stats of its
// own (Client.Stats).
func New(o Options) *Client {
	if o.Stats == nil {
		o.Stats = &Stats{}
	}
	o.Credentials = append([]Credential(nil), o.Credentials...)
	o.Insecure = append([]string(nil), o.Insecure...)
	o.Mirrors = append([]string(nil), o.Mirrors...)
	return &Client{o: o, keychain: newKeychain(o), rt: &lazyTransport{o: o}}
}

// lazyTransport builds the client's transport stack on its first request,
// so that a client made only to parse names costs nothing.
type lazyTransport struct {
	o    Options
	once sync.Once
	rt   http.RoundTripper
}

func (l *lazyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	l.once.Do(func() { l.rt = l.o.roundTripper() })
	return l.rt.RoundTrip(req)
}

// Options returns a copy of the options c was made from.
func (c *Client) Options() Options { return c.o }

// Stats counts the traffic of every operation of c.
func (c *Client) Stats() *Stats { return c.o.Stats }

// WithProgress returns a client that sends its progress events to rep and
// shares everything else (transport, connections, credentials, Stats) with
// c.
func (c *Client) WithProgress(rep progress.Reporter) *Client {
	d := *c
	d.o.Progress = rep
	return &d
}

// WithoutPolicy returns a client that asks no policy before its requests
// (for reading and writing signatures, which the policy's own checks
// need) and shares everything else with c.
func (c *Client) WithoutPolicy() *Client {
	d := *c
	d.o.Policy = nil
	return &d
}

// Keychain returns c's credential chain (see newKeychain). It also
// implements authn.ContextKeychain.
func (c *Client) Keychain() authn.Keychain { return c.keychain }

// RemoteOptions returns the go-containerregistry options for one operation:
// the keychain, ctx, a transport that honours HTTPS_PROXY/HTTP_PROXY/
// NO_PROXY, CertDir, certs.d directories, TLSVerify and Insecure, retries
// with bounded backoff on 408/429/5xx, connection resets and timeouts, Stats
// counting, the user agent and the number of parallel blob transfers.
func (c *Client) RemoteOptions(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(orBackground(ctx)),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithTransport(c.rt),
		// Requests are retried by our own transport, below authentication;
		// go-containerregistry's retry layer only restarts whole blob uploads
		// and manifest puts that a registry failed in a restartable way.
		remote.WithRetryStatusCodes(),
		remote.WithRetryPredicate(operationRetryable),
		remote.WithRetryBackoff(c.o.operationBackoff()),
		remote.WithUserAgent(c.o.userAgent()),
		remote.WithJobs(c.o.jobs()),
	}
}
