package registry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRetry(t *testing.T) {
	t.Parallel()
	transient, final := errors.New("transient"), errors.New("final")
	retryable := func(err error) bool { return errors.Is(err, transient) }
	ctx := context.Background()

	tries, heard := 0, 0
	err := Retry(ctx, 3, time.Millisecond, retryable, func(error) { heard++ }, func() error {
		if tries++; tries < 3 {
			return transient
		}
		return nil
	})
	if err != nil || tries != 3 || heard != 2 {
		t.Errorf("succeeds on the third try: err %v, %d tries, %d retries heard", err, tries, heard)
	}

	tries = 0
	if err := Retry(ctx, 2, time.Millisecond, retryable, nil, func() error { tries++; return transient }); !errors.Is(err, transient) || tries != 3 {
		t.Errorf("always transient: err %v after %d tries, want 3", err, tries)
	}

	tries = 0
	if err := Retry(ctx, 5, time.Millisecond, retryable, nil, func() error { tries++; return final }); !errors.Is(err, final) || tries != 1 {
		t.Errorf("not retryable: err %v after %d tries, want 1", err, tries)
	}

	cctx, cancel := context.WithCancel(ctx)
	tries = 0
	err = Retry(cctx, 5, time.Hour, retryable, func(error) { cancel() }, func() error { tries++; return transient })
	if !errors.Is(err, context.Canceled) || tries != 1 {
		t.Errorf("cancelled during the wait: err %v after %d tries", err, tries)
	}
}
