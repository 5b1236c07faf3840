package harness

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Token service defaults: the registry's auth.token service and issuer.
const (
	DefaultTokenService = "kiln-test-registry"
	DefaultTokenIssuer  = "kiln-test-token-issuer"
)

// TokenOptions configures a TokenService.
type TokenOptions struct {
	// Users maps user names to passwords. A user who presents the right
	// password is granted every action a scope asks for.
	Users map[string]string
	// AnonymousPull grants "pull" (and nothing else) to requests without
	// credentials, like Docker Hub does for public repositories. Without
	// it anonymous requests get a token that grants nothing.
	AnonymousPull bool
	// TTL is how long an issued token is valid (default 5 minutes). The
	// distribution server adds 60 s of leeway when it checks expiry.
	TTL time.Duration
	// TLS, when set, makes the service serve HTTPS with a certificate from
	// this CA for localhost and 127.0.0.1; the realm is then https.
	TLS *CA
	// Service and Issuer default to DefaultTokenService and
	// DefaultTokenIssuer.
	Service, Issuer string
}

// TokenRequest is one request the TokenService answered.
type TokenRequest struct {
	// Method is GET (the token flow with basic credentials) or POST (the
	// OAuth2 flow: grant_type password or refresh_token).
	Method string
	// Grant is "basic", "anonymous", "password" or "refresh_token".
	Grant string
	// User is the authenticated user ("" when anonymous or refused).
	User string
	// Scopes are the scopes asked for, as sent.
	Scopes []string
	// Granted are the scopes granted ("repository:NAME:pull,push").
	Granted []string
	// Status is the HTTP status of the answer.
	Status int
	// Expired reports that the token was issued already expired
	// (ExpireNext).
	Expired bool
}

// TokenService is the authorization service of distribution's token
// authentication ("auth: token" in the registry's configuration): a client
// that the registry answers 401 with `Bearer realm=...,service=...,scope=...`
// asks the realm for a token, with basic credentials (GET) or an OAuth2 form
// (POST), and presents the token to the registry. Tokens are JWTs signed
// with ES256 whose header carries the signing certificate (x5c); the
// registry trusts that certificate through its rootcertbundle.
//
// It listens on 127.0.0.1 and its realm names the host "localhost", so that
// clients that refuse realms on loopback IP literals other than the
// registry's own (go-containerregistry does) accept it.
type TokenService struct {
	// Addr is "127.0.0.1:PORT", where the service listens.
	Addr string
	// Realm is the token endpoint, "http://localhost:PORT/token" (https
	// with TLS).
	Realm string
	// Service and Issuer go into the registry's configuration.
	Service, Issuer string
	// RootCertBundle is the PEM file of the certificate that signs tokens:
	// the registry's auth.token.rootcertbundle.
	RootCertBundle string

	opts    TokenOptions
	key     *ecdsa.PrivateKey
	certDER []byte
	srv     *http.Server

	mu         sync.Mutex
	expireNext int
	log        []TokenRequest
	tokens     []string
	refresh    map[string]string // refresh token -> user
}

// StartTokenService writes the signing certificate into dir and starts the
// service on a free 127.0.0.1 port. Close stops it.
func StartTokenService(dir string, o TokenOptions) (*TokenService, error) {
	if o.TTL <= 0 {
		o.TTL = 5 * time.Minute
	}
	if o.Service == "" {
		o.Service = DefaultTokenService
	}
	if o.Issuer == "" {
		o.Issuer = DefaultTokenIssuer
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: o.Issuer, Organization: []string{"kiln tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	bundle := filepath.Join(dir, "token-signer.crt")
	if err := os.WriteFile(bundle, pemBlock("CERTIFICATE", der), 0o644); err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	s := &TokenService{
		Addr:           ln.Addr().String(),
		Realm:          fmt.Sprintf("http://localhost:%d/token", port),
		Service:        o.Service,
		Issuer:         o.Issuer,
		RootCertBundle: bundle,
		opts:           o,
		key:            key,
		certDER:        der,
		refresh:        map[string]string{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.serveToken)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	if o.TLS != nil {
		cert, err := o.TLS.TLSCertificate("localhost", "127.0.0.1")
		if err != nil {
			ln.Close()
			return nil, err
		}
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.Realm = fmt.Sprintf("https://localhost:%d/token", port)
		go func() { _ = s.srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { _ = s.srv.Serve(ln) }()
	}
	return s, nil
}

// Close stops the service.
func (s *TokenService) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// ExpireNext makes the next n tokens the service issues expired on issue
// (beyond the registry's leeway), so that a client's next registry request
// is refused and it must fetch a new token.
func (s *TokenService) ExpireNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireNext = n
}

// Requests returns every request answered so far, in order.
func (s *TokenService) Requests() []TokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// Tokens returns every token (and refresh token) issued so far, so that a
// test can check that none of them leaks into output.
func (s *TokenService) Tokens() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.tokens)
	for r := range s.refresh {
		out = append(out, r)
	}
	return out
}

// Issued returns how many tokens were issued (expired ones included).
func (s *TokenService) Issued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokens)
}

// tokenError is the JSON body of a refusal, in the registry's error format.
func tokenError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="kiln-test-token"`)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": msg}},
	})
}

func (s *TokenService) serveToken(w http.ResponseWriter, r *http.Request) {
	rec := TokenRequest{Method: r.Method}
	defer func() {
		s.mu.Lock()
		s.log = append(s.log, rec)
		s.mu.Unlock()
	}()
	fail := func(status int, code, msg string) {
		rec.Status = status
		tokenError(w, status, code, msg)
	}

	var (
		service string
		offline bool
		user    string
		authed  bool
	)
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		service = q.Get("service")
		rec.Scopes = q["scope"]
		if u, p, ok := r.BasicAuth(); ok {
			rec.Grant = "basic"
			if !s.checkPassword(u, p) {
				fail(http.StatusUnauthorized, "UNAUTHORIZED", "incorrect username or password")
				return
			}
			user, authed = u, true
		} else {
			rec.Grant = "anonymous"
		}
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			fail(http.StatusBadRequest, "UNSUPPORTED", "bad form: "+err.Error())
			return
		}
		f := r.PostForm
		service = f.Get("service")
		rec.Scopes = strings.Fields(f.Get("scope"))
		rec.Grant = f.Get("grant_type")
		switch rec.Grant {
		case "password":
			if !s.checkPassword(f.Get("username"), f.Get("password")) {
				fail(http.StatusUnauthorized, "UNAUTHORIZED", "incorrect username or password")
				return
			}
			user, authed = f.Get("username"), true
			offline = f.Get("access_type") == "offline"
		case "refresh_token":
			s.mu.Lock()
			u, ok := s.refresh[f.Get("refresh_token")]
			s.mu.Unlock()
			if !ok {
				fail(http.StatusUnauthorized, "UNAUTHORIZED", "unknown refresh token")
				return
			}
			user, authed = u, true
		default:
			fail(http.StatusBadRequest, "UNSUPPORTED", "unsupported grant_type")
			return
		}
	default:
		fail(http.StatusMethodNotAllowed, "UNSUPPORTED", "GET or POST")
		return
	}
	if service != "" && service != s.Service {
		fail(http.StatusBadRequest, "UNSUPPORTED", "unknown service")
		return
	}
	rec.User = user

	var access []resourceActions
	for _, sc := range rec.Scopes {
		ra, err := parseScope(sc)
		if err != nil {
			fail(http.StatusBadRequest, "UNSUPPORTED", err.Error())
			return
		}
		ra.Actions = s.grant(authed, ra)
		if len(ra.Actions) > 0 {
			access = append(access, ra)
			rec.Granted = append(rec.Granted, ra.Type+":"+ra.Name+":"+strings.Join(ra.Actions, ","))
		}
	}

	s.mu.Lock()
	expired := s.expireNext > 0
	if expired {
		s.expireNext--
	}
	s.mu.Unlock()
	rec.Expired = expired
	now := time.Now()
	iat, exp := now, now.Add(s.opts.TTL)
	if expired {
		iat, exp = now.Add(-10*time.Minute), now.Add(-5*time.Minute)
	}
	tok, err := s.sign(user, access, iat, exp)
	if err != nil {
		fail(http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	body := map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   int(s.opts.TTL / time.Second),
		"issued_at":    iat.UTC().Format(time.RFC3339),
	}
	s.mu.Lock()
	s.tokens = append(s.tokens, tok)
	if offline {
		rt := randomHex(24)
		s.refresh[rt] = user
		body["refresh_token"] = rt
	}
	s.mu.Unlock()
	rec.Status = http.StatusOK
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

// checkPassword compares in constant time.
func (s *TokenService) checkPassword(user, pass string) bool {
	want, ok := s.opts.Users[user]
	return ok && user != "" && subtle.ConstantTimeCompare([]byte(want), []byte(pass)) == 1
}

// grant returns the actions of ra that the caller may have.
func (s *TokenService) grant(authed bool, ra resourceActions) []string {
	var out []string
	for _, a := range ra.Actions {
		switch {
		case authed:
			out = append(out, a)
		case s.opts.AnonymousPull && ra.Type == "repository" && a == "pull":
			out = append(out, a)
		}
	}
	return out
}

// resourceActions is one entry of a token's "access" claim.
type resourceActions struct {
	Type    string   `json:"type"`
	Class   string   `json:"class,omitempty"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// parseScope parses "repository:team/app:pull,push" (the name may hold
// ':' only in a resource class, "repository(plugin):name:pull").
func parseScope(s string) (resourceActions, error) {
	i, j := strings.Index(s, ":"), strings.LastIndex(s, ":")
	if i <= 0 || j <= i+1 {
		return resourceActions{}, fmt.Errorf("malformed scope %q", s)
	}
	ra := resourceActions{Type: s[:i], Name: s[i+1 : j]}
	if k := strings.Index(ra.Type, "("); k > 0 && strings.HasSuffix(ra.Type, ")") {
		ra.Class = ra.Type[k+1 : len(ra.Type)-1]
		ra.Type = ra.Type[:k]
	}
	for _, a := range strings.Split(s[j+1:], ",") {
		if a != "" && !slices.Contains(ra.Actions, a) {
			ra.Actions = append(ra.Actions, a)
		}
	}
	return ra, nil
}

// sign makes a compact JWS (ES256) of the claims distribution 2.8 checks:
// iss, aud (a string), exp and nbf (with its 60 s leeway), and access.
func (s *TokenService) sign(user string, access []resourceActions, iat, exp time.Time) (string, error) {
	header := map[string]any{
		"typ": "JWT",
		"alg": "ES256",
		"x5c": []string{base64.StdEncoding.EncodeToString(s.certDER)},
	}
	if access == nil {
		access = []resourceActions{}
	}
	claims := map[string]any{
		"iss":    s.Issuer,
		"sub":    user,
		"aud":    s.Service,
		"exp":    exp.Unix(),
		"nbf":    iat.Add(-time.Second).Unix(),
		"iat":    iat.Unix(),
		"jti":    randomHex(16),
		"access": access,
	}
	h, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	sum := sha256.Sum256([]byte(signed))
	r, sv, err := ecdsa.Sign(rand.Reader, s.key, sum[:])
	if err != nil {
		return "", err
	}
	// JWS ES256: R and S as 32-byte big-endian integers, concatenated.
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	sv.FillBytes(sig[32:])
	return signed + "." + enc.EncodeToString(sig), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

// FetchToken asks the service at realm for a token for scopes with basic
// credentials (user "" for none), as a registry client does, trusting ca
// when it is not nil. It returns the token.
func FetchToken(realm, service, user, pass string, ca *CA, scopes ...string) (string, error) {
	u, err := url.Parse(realm)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("service", service)
	q["scope"] = scopes
	u.RawQuery = q.Encode()
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		return "", err
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	c := http.DefaultClient
	if ca != nil {
		c = ca.Client()
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", realm, resp.Status)
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", err
	}
	if body.Token == "" {
		return "", errors.New("no token in the answer")
	}
	return body.Token, nil
}
