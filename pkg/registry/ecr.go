package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/logging"
	"github.com/awslabs/amazon-ecr-credential-helper/ecr-login/api"
	"github.com/google/go-containerregistry/pkg/authn"
)

func init() { addPlatformSource(ecrKeychain{}) }

// ecrKeychain asks AWS for the token of a private ECR registry.
type ecrKeychain struct{}

func (ecrKeychain) credential(ctx context.Context, host, _ string) (*credential, error) {
	if !IsECRHost(host) {
		return nil, nil
	}
	return ecrCredential(orBackground(ctx), host)
}

// ecrSource names the built-in ECR credentials in messages.
const ecrSource = "built-in Amazon ECR credentials (AWS SDK default chain: environment, web identity/IRSA, pod or instance role)"

// IsECRHost reports whether host is a private Amazon ECR registry
// (ACCOUNT.dkr.ecr.REGION.amazonaws.com and the other AWS partitions' and
// FIPS spellings), for which kiln gets credentials from AWS itself when no
// auth file has any.
func IsECRHost(host string) bool {
	if host == "" {
		return false
	}
	r, err := api.ExtractRegistry(host)
	return err == nil && r.Service == api.ServiceECR
}

// ecrGetter fetches an ECR authorization token for host. It is a variable
// so that tests can stand in for AWS.
var ecrGetter = func(ctx context.Context, host string) (authn.AuthConfig, error) {
	reg, err := api.ExtractRegistry(host)
	if err != nil {
		return authn.AuthConfig{}, err
	}
	type result struct {
		auth *api.Auth
		err  error
	}
	done := make(chan result, 1)
	go func() {
		client, err := newECRClient(ctx, reg)
		if err != nil {
			done <- result{err: err}
			return
		}
		a, err := client.GetCredentials(host)
		done <- result{a, err}
	}()
	select {
	case <-ctx.Done():
		return authn.AuthConfig{}, ctx.Err()
	case r := <-done:
		if r.err != nil {
			return authn.AuthConfig{}, r.err
		}
		if r.auth == nil || r.auth.Password == "" {
			return authn.AuthConfig{}, errors.New("AWS returned no authorization token")
		}
		return authn.AuthConfig{Username: r.auth.Username, Password: r.auth.Password}, nil
	}
}

// ECR tokens last 12 hours; kiln keeps one for an hour, and a failure for
// a minute (so that a lookup repeated for an error message does not ask
// AWS again).
const (
	ecrTokenTTL = time.Hour
	ecrErrorTTL = time.Minute
)

type ecrEntry struct {
	cfg     authn.AuthConfig
	err     error
	expires time.Time
}

var ecrCache = struct {
	sync.Mutex
	m map[string]ecrEntry
}{m: map[string]ecrEntry{}}

// ecrCredential returns the ECR credential for host (cached). Only called
// for hosts IsECRHost accepts, so no other registry ever causes an AWS call.
func ecrCredential(ctx context.Context, host string) (*credential, error) {
	ecrCache.Lock()
	e, ok := ecrCache.m[host]
	ecrCache.Unlock()
	if !ok || time.Now().After(e.expires) {
		cfg, err := ecrGetter(ctx, host)
		ttl := ecrTokenTTL
		if err != nil {
			ttl = ecrErrorTTL
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s for %s: %w", ecrSource, host, err)
			}
		}
		e = ecrEntry{cfg: cfg, err: err, expires: time.Now().Add(ttl)}
		ecrCache.Lock()
		ecrCache.m[host] = e
		ecrCache.Unlock()
	}
	if e.err != nil {
		return nil, fmt.Errorf("%s for %s: %v (log in with `aws ecr get-login-password | kiln login --username AWS --password-stdin %s` instead)",
			ecrSource, host, redact(e.err.Error(), []string{e.cfg.Password}), host)
	}
	return &credential{cfg: e.cfg, source: ecrSource}, nil
}

// resetECRCache forgets cached ECR tokens (tests).
func resetECRCache() {
	ecrCache.Lock()
	ecrCache.m = map[string]ecrEntry{}
	ecrCache.Unlock()
}

// newECRClient makes the ECR client for reg's region from the AWS SDK's
// default configuration chain. The SDK's logger is silenced: kiln reports
// what matters in its own errors, and a warning such as the IMDSv1
// fallback must not land in a build's output (or break JSON progress).
func newECRClient(ctx context.Context, reg *api.Registry) (api.Client, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(reg.Region),
		config.WithLogger(logging.Nop{}),
		config.WithClientLogMode(0),
	}
	if reg.FIPS {
		opts = append(opts, config.WithEndpointDiscovery(aws.EndpointDiscoveryEnabled))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	return api.DefaultClientFactory{}.NewClient(cfg), nil
}
