package testutil

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/kiln-build/kiln/internal/testutil/harness"
)

// get sends GET url with an optional Authorization header and returns
// the status and WWW-Authenticate.
func get(t *testing.T, c *http.Client, url, authz string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
}

// statusOf returns the HTTP status of a go-containerregistry error (0 if
// it has none).
func statusOf(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}

func TestTLSBasicRegistry(t *testing.T) {
	SkipIfShort(t)
	s := StartTLSBasicRegistry(t, SetupOptions{})
	if s.Scheme != "https" || s.CA == nil || s.CertDir == "" {
		t.Fatalf("set-up %+v lacks TLS", s)
	}
	c := s.HTTPClient()
	v2 := "https://" + s.Addr + "/v2/"
	if st, wa := get(t, c, v2, ""); st != http.StatusUnauthorized || !strings.HasPrefix(wa, "Basic ") {
		t.Errorf("anonymous GET /v2/: %d %q, want 401 with a Basic challenge", st, wa)
	}
	req, _ := http.NewRequest(http.MethodGet, v2, nil)
	req.SetBasicAuth(s.User, s.Password+"x")
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: %v %v, want 401", resp, err)
	}
	req.SetBasicAuth(s.User, s.Password)
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("right password: %v %v, want 200", resp, err)
	}
	// Nothing else trusts the CA.
	if _, err := http.Get(v2); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("GET %s with the system roots: %v, want a certificate error", v2, err)
	}

	img := BusyboxImage(t)
	s.Push(t, "library/busybox:1", img)
	want, _ := img.Digest()
	got, blobs := s.VerifyBlobs(t, "library/busybox:1")
	if got != want || len(blobs) != 2 {
		t.Errorf("VerifyBlobs: %s with %d blobs, want %s with 2 (config, layer)", got, len(blobs), want)
	}
	l, _ := img.Layers()
	ld, _ := l[0].Digest()
	if !s.HasBlob(t, "library/busybox", ld) {
		t.Errorf("HasBlob(%s) is false after the push", ld)
	}
	anon := *s
	anon.User, anon.Password = "nobody", "wrong"
	ref, _ := name.ParseReference(s.Ref("library/busybox:1"))
	if _, err := remote.Get(ref, anon.RemoteOptions()...); statusOf(err) != http.StatusUnauthorized {
		t.Errorf("pull with a wrong password: %v, want 401", err)
	}
}

func TestTokenRegistry(t *testing.T) {
	SkipIfShort(t)
	for _, tls := range []bool{false, true} {
		s := StartTokenRegistry(t, SetupOptions{}, tls)
		t.Run(s.Name, func(t *testing.T) { checkTokenRegistry(t, s) })
	}
}

func checkTokenRegistry(t *testing.T, s *RegistrySetup) {
	c := s.HTTPClient()
	v2 := s.Scheme + "://" + s.Addr + "/v2/"
	st, wa := get(t, c, v2, "")
	if st != http.StatusUnauthorized || !strings.Contains(wa, `realm="`+s.Token.Realm+`"`) ||
		!strings.Contains(wa, `service="`+harness.DefaultTokenService+`"`) {
		t.Fatalf("anonymous GET /v2/: %d %q, want 401 with a Bearer challenge naming %s", st, wa, s.Token.Realm)
	}
	if wantScheme := s.Scheme + "://localhost:"; !strings.HasPrefix(s.Token.Realm, wantScheme) {
		t.Errorf("realm %s, want %s...", s.Token.Realm, wantScheme)
	}

	// The token format, without go-containerregistry: a valid token is
	// accepted, an expired one and a forged one are not.
	tok, err := harness.FetchToken(s.Token.Realm, s.Token.Service, s.User, s.Password, s.CA, "registry:catalog:*")
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := get(t, c, v2, "Bearer "+tok); st != http.StatusOK {
		t.Errorf("GET /v2/ with a fresh token: %d, want 200\n%s", st, s.RegistryLog())
	}
	forged := tok[:len(tok)-4] + "AAAA"
	if st, _ := get(t, c, v2, "Bearer "+forged); st != http.StatusUnauthorized {
		t.Errorf("GET /v2/ with a forged signature: %d, want 401", st)
	}
	s.Token.ExpireNext(1)
	old, err := harness.FetchToken(s.Token.Realm, s.Token.Service, s.User, s.Password, s.CA)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := get(t, c, v2, "Bearer "+old); st != http.StatusUnauthorized {
		t.Errorf("GET /v2/ with an expired token: %d, want 401", st)
	}
	if _, err := harness.FetchToken(s.Token.Realm, s.Token.Service, s.User, "wrong", s.CA); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("token with a wrong password: %v, want 401", err)
	}

	// The real flow: go-containerregistry pushes and pulls with it.
	img := BusyboxImage(t)
	s.Push(t, "team/app:1", img)
	want, _ := img.Digest()
	if got, _ := s.VerifyBlobs(t, "team/app:1"); got != want {
		t.Errorf("pulled %s, pushed %s", got, want)
	}
	var pushGranted bool
	for _, r := range s.Token.Requests() {
		if r.User == s.User && (slices.Contains(r.Granted, "repository:team/app:push,pull") ||
			slices.Contains(r.Granted, "repository:team/app:pull,push")) {
			pushGranted = true
		}
	}
	if !pushGranted {
		t.Errorf("no token granted push on team/app: %+v", s.Token.Requests())
	}

	// An expired token is refreshed once by the client.
	before := s.Token.Issued()
	s.Token.ExpireNext(1)
	ref, _ := name.ParseReference(s.Ref("team/app:1"))
	if _, err := remote.Image(ref, s.RemoteOptions()...); err != nil {
		t.Errorf("pull after the first token expired: %v", err)
	}
	if n := s.Token.Issued() - before; n < 2 {
		t.Errorf("%d tokens issued for a pull whose first token was expired, want a second one", n)
	}
	// Every token expired: the client fails with 401.
	s.Token.ExpireNext(1000)
	if _, err := remote.Image(ref, s.RemoteOptions()...); statusOf(err) != http.StatusUnauthorized {
		t.Errorf("pull with only expired tokens: %v, want 401", err)
	}
	s.Token.ExpireNext(0)

	// Anonymous: no pull unless AnonymousPull.
	anon := []remote.Option{remote.WithTransport(c.Transport), remote.WithAuth(authn.Anonymous)}
	if _, err := remote.Image(ref, anon...); statusOf(err) != http.StatusUnauthorized {
		t.Errorf("anonymous pull: %v, want 401", err)
	}
	bad := []remote.Option{remote.WithTransport(c.Transport), remote.WithAuth(&authn.Basic{Username: s.User, Password: "wrong"})}
	if _, err := remote.Image(ref, bad...); statusOf(err) != http.StatusUnauthorized {
		t.Errorf("pull with a wrong password: %v, want 401", err)
	}
}

func TestTokenRegistryAnonymousPull(t *testing.T) {
	SkipIfShort(t)
	s := StartTokenRegistry(t, SetupOptions{AnonymousPull: true}, false)
	img := BusyboxImage(t)
	s.Push(t, "library/busybox:1", img)
	ref, _ := name.ParseReference(s.Ref("library/busybox:1"))
	anon := []remote.Option{remote.WithAuth(authn.Anonymous)}
	if _, err := remote.Image(ref, anon...); err != nil {
		t.Errorf("anonymous pull: %v", err)
	}
	// The push is refused. go-containerregistry answers the 401 by asking
	// for a new token and sending the manifest again; that resend can fail
	// on its own (an empty body) before the second 401 comes back, so a
	// non-HTTP error counts as refused too, but no other status does.
	dst, _ := name.ParseReference(s.Ref("library/busybox:2"))
	if err := remote.Write(dst, img, anon...); err == nil || (statusOf(err) != http.StatusUnauthorized && statusOf(err) != 0) {
		t.Errorf("anonymous push: %v, want 401", err)
	}
	if _, err := remote.Image(dst, anon...); err == nil {
		t.Error("the anonymous push created library/busybox:2")
	}
}

// TestTokenServiceOAuth exercises the OAuth2 form of the token service
// (POST, grant_type password with access_type offline, then refresh_token)
// and checks that the registry accepts the tokens it gets.
func TestTokenServiceOAuth(t *testing.T) {
	SkipIfShort(t)
	s := StartTokenRegistry(t, SetupOptions{}, false)
	post := func(form url.Values) (int, map[string]any) {
		t.Helper()
		resp, err := http.PostForm(s.Token.Realm, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	base := url.Values{"service": {s.Token.Service}, "client_id": {"kiln-test"}, "scope": {"repository:team/app:pull registry:catalog:*"}}
	form := url.Values{"grant_type": {"password"}, "username": {s.User}, "password": {s.Password + "x"}}
	for k, v := range base {
		form[k] = v
	}
	if st, _ := post(form); st != http.StatusUnauthorized {
		t.Errorf("password grant with a wrong password: %d, want 401", st)
	}
	form.Set("password", s.Password)
	form.Set("access_type", "offline")
	st, body := post(form)
	tok, _ := body["access_token"].(string)
	refresh, _ := body["refresh_token"].(string)
	if st != http.StatusOK || tok == "" || refresh == "" {
		t.Fatalf("password grant: %d %v, want 200 with an access and a refresh token", st, body)
	}
	v2 := "http://" + s.Addr + "/v2/"
	if st, _ := get(t, s.HTTPClient(), v2, "Bearer "+tok); st != http.StatusOK {
		t.Errorf("GET /v2/ with the password grant's token: %d", st)
	}
	rf := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}
	for k, v := range base {
		rf[k] = v
	}
	st, body = post(rf)
	tok2, _ := body["access_token"].(string)
	if st != http.StatusOK || tok2 == "" {
		t.Fatalf("refresh grant: %d %v", st, body)
	}
	if st, _ := get(t, s.HTTPClient(), v2, "Bearer "+tok2); st != http.StatusOK {
		t.Errorf("GET /v2/ with the refresh grant's token: %d", st)
	}
	rf.Set("refresh_token", "not-issued")
	if st, _ := post(rf); st != http.StatusUnauthorized {
		t.Errorf("refresh grant with an unknown refresh token: %d, want 401", st)
	}
	reqs := s.Token.Requests()
	last := reqs[len(reqs)-2]
	if last.Grant != "refresh_token" || last.User != s.User || !slices.Contains(last.Granted, "repository:team/app:pull") ||
		!slices.Contains(last.Granted, "registry:catalog:*") {
		t.Errorf("refresh request recorded as %+v", last)
	}
	if !slices.Contains(s.Token.Tokens(), refresh) {
		t.Errorf("Tokens() does not list the refresh token")
	}
}
