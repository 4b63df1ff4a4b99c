//go:build !go1.21

package main

import (
	"context"
	"time"
)

// withoutCancel is Go 1.21's context.WithoutCancel for the toolchains before it: its
// parent first, as there.
func withoutCancel(ctx context.Context) context.Context { return withoutCancelCtx{ctx} }

type withoutCancelCtx struct{ c context.Context }

func (withoutCancelCtx) Deadline() (time.Time, bool)         { return time.Time{}, false }
func (withoutCancelCtx) Done() <-chan struct{}               { return nil }
func (withoutCancelCtx) Err() error                          { return nil }
func (c withoutCancelCtx) Value(key interface{}) interface{} { return c.c.Value(key) }
