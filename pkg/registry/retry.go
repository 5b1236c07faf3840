package registry

import (
	"context"
	"time"
)

// Retry calls try until it succeeds, fails with an error retryable
// rejects, ctx ends, or retries further tries are spent, waiting
// backoff(delay, attempt) between tries (delay·2^attempt with jitter, at
// most maxRetryDelay). onRetry, if not nil, hears of each error that is
// tried again. It returns nil, try's last error, or ctx's error when ctx
// ended during a wait. It is the one retry loop of whole transfers (a
// blob pushed, a layer pulled); single HTTP requests are retried by the
// transport (retryTransport), which also honours Retry-After.
func Retry(ctx context.Context, retries int, delay time.Duration, retryable func(error) bool, onRetry func(error), try func() error) error {
	for attempt := 0; ; attempt++ {
		err := try()
		if err == nil {
			return nil
		}
		if attempt >= retries || ctx.Err() != nil || !retryable(err) {
			return err
		}
		if onRetry != nil {
			onRetry(err)
		}
		timer := time.NewTimer(backoff(delay, attempt))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
	}
}
