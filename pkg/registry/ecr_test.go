package registry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/awslabs/amazon-ecr-credential-helper/ecr-login/api"
	"github.com/google/go-containerregistry/pkg/authn"
)

func TestIsECRHost(t *testing.T) {
	for host, want := range map[string]bool{
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com":          true,
		"123456789012.dkr.ecr.us-east-1.amazonaws.com":          true,
		"123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com": true,
		"123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn":      true,
		"123456789012.dkr-ecr.eu-west-1.on.aws":                 true,
		"12345.dkr.ecr.eu-west-1.amazonaws.com":                 false, // account IDs have 12 digits
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil":     false,
		"evil.com/123456789012.dkr.ecr.eu-west-1.amazonaws.com": false,
		"public.ecr.aws":  false, // public ECR pulls are anonymous
		"index.docker.io": false,
		"127.0.0.1:5000":  false,
		"":                false,
	} {
		if got := IsECRHost(host); got != want {
			t.Errorf("IsECRHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// stubECR replaces the AWS call for the test and counts calls.
func stubECR(t *testing.T, cfg authn.AuthConfig, err error) *atomic.Int64 {
	t.Helper()
	var calls atomic.Int64
	old := ecrGetter
	ecrGetter = func(ctx context.Context, host string) (authn.AuthConfig, error) {
		calls.Add(1)
		if !IsECRHost(host) {
			t.Errorf("AWS asked about %s", host)
		}
		return cfg, err
	}
	resetECRCache()
	t.Cleanup(func() { ecrGetter = old; resetECRCache() })
	return &calls
}

const ecrHost = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"

func TestKeychainECR(t *testing.T) {
	home := isolateEnv(t)
	calls := stubECR(t, authn.AuthConfig{Username: "AWS", Password: "ecr-token-secret"}, nil)
	o := Options{}

	// Not an ECR host: AWS is never asked.
	if c, err := resolve(t, o, "registry.example.com/app"); err != nil || c != nil {
		t.Errorf("other registry: %+v %v", c, err)
	}
	if calls.Load() != 0 {
		t.Fatalf("AWS asked %d times for a non-ECR registry", calls.Load())
	}

	// No auth file entry: the built-in ECR credentials, asked once.
	wantUser(t, o, ecrHost+"/team/app", "AWS", "ecr-token-secret")
	wantUser(t, o, ecrHost+"/team/other", "AWS", "ecr-token-secret")
	if calls.Load() != 1 {
		t.Errorf("AWS asked %d times, want 1 (cached)", calls.Load())
	}
	c, err := newKeychain(o).lookup(context.Background(), mustRef(t, ecrHost+"/team/app", o).Context())
	if err != nil || c == nil || !strings.Contains(c.source, "built-in Amazon ECR credentials") {
		t.Errorf("source %+v %v", c, err)
	}

	// An auth file entry (a `kiln login` with get-login-password) wins.
	writeAuthFile(t, filepath.Join(home, ".docker", "config.json"), map[string]string{ecrHost: "AWS:from-login"}, nil)
	wantUser(t, o, ecrHost+"/team/app", "AWS", "from-login")

	// --creds win over everything.
	o.Credentials = []Credential{{Registry: ecrHost, Username: "ci", Password: "cli-secret"}}
	wantUser(t, o, ecrHost+"/team/app", "ci", "cli-secret")
	if calls.Load() != 1 {
		t.Errorf("AWS asked %d times", calls.Load())
	}
}

func TestKeychainECRFailure(t *testing.T) {
	isolateEnv(t)
	calls := stubECR(t, authn.AuthConfig{}, errors.New("no EC2 IMDS role found, operation error ec2imds"))
	_, err := resolve(t, Options{}, ecrHost+"/app")
	if err == nil || !strings.Contains(err.Error(), "built-in Amazon ECR credentials") || !strings.Contains(err.Error(), " for "+ecrHost+": ") ||
		!strings.Contains(err.Error(), "no EC2 IMDS role found") || !strings.Contains(err.Error(), "kiln login --username AWS --password-stdin") {
		t.Fatalf("error %v", err)
	}
	// The failure is remembered for a while: a second lookup (for an error
	// message, say) does not ask AWS again.
	_, _ = resolve(t, Options{}, ecrHost+"/app")
	if calls.Load() != 1 {
		t.Errorf("AWS asked %d times", calls.Load())
	}
}

func TestCredentialsOption(t *testing.T) {
	home := isolateEnv(t)
	writeAuthFile(t, filepath.Join(home, ".docker", "config.json"), map[string]string{"reg.example.com": "file:pw"}, nil)
	o := Options{Credentials: []Credential{{Registry: "other.example.com", Username: "u", Password: "p"}}}
	wantUser(t, o, "reg.example.com/app", "file", "pw")
	wantUser(t, o, "other.example.com/app", "u", "p")
	c, err := ParseCredential("docker.io", "bob:pa:ss")
	if err != nil || c.Username != "bob" || c.Password != "pa:ss" {
		t.Errorf("ParseCredential: %+v %v", c, err)
	}
	o = Options{Credentials: []Credential{c}}
	wantUser(t, o, "busybox", "bob", "pa:ss")
	if _, err := ParseCredential("", ":secret-value"); err == nil || strings.Contains(err.Error(), "secret-value") {
		t.Errorf("bad --creds: %v", err)
	}
}

// TestECRClientSilent: the AWS SDK writes nothing on kiln's stderr, even
// where it warns (an instance metadata service that refuses IMDSv2
// tokens: "falling back to IMDSv1").
func TestECRClientSilent(t *testing.T) {
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "forbidden", http.StatusForbidden)
	}))
	defer imds.Close()
	for k, v := range map[string]string{
		"AWS_EC2_METADATA_SERVICE_ENDPOINT":      imds.URL,
		"AWS_CONFIG_FILE":                        "/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE":            "/dev/null",
		"AWS_ACCESS_KEY_ID":                      "",
		"AWS_SECRET_ACCESS_KEY":                  "",
		"AWS_WEB_IDENTITY_TOKEN_FILE":            "",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI":     "",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "",
		"AWS_PROFILE":                            "",
	} {
		t.Setenv(k, v)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	reg, err := api.ExtractRegistry("123456789012.dkr.ecr.us-east-1.amazonaws.com")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := newECRClient(ctx, reg)
	if err == nil {
		_, err = client.GetCredentials("123456789012.dkr.ecr.us-east-1.amazonaws.com")
	}
	os.Stderr = stderr
	w.Close()
	out, _ := io.ReadAll(r)
	if err == nil {
		t.Fatal("got ECR credentials without any AWS credentials")
	}
	if len(out) > 0 {
		t.Errorf("the AWS SDK wrote to stderr: %q", out)
	}
}
