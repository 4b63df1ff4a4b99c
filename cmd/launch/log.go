package main

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// lineHandler writes one short line per record on stderr: "launch: warning: ...".
// A launcher's output sits among the app's logs, so it stays terse; debug lines carry
// the time since start, which is what start-gate questions need.
type lineHandler struct {
	w     io.Writer
	mu    *sync.Mutex
	level slog.Leveler
	start time.Time
	attrs string // pre-rendered WithAttrs
}

func newLineHandler(w io.Writer, level slog.Leveler) *lineHandler {
	return &lineHandler{w: w, mu: &sync.Mutex{}, level: level, start: time.Now()}
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("launch: ")
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	case r.Level < slog.LevelInfo:
		b.WriteString("debug: +")
		b.WriteString(r.Time.Sub(h.start).Round(time.Microsecond).String())
		b.WriteString(" ")
	}
	b.WriteString(r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, a)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func writeAttr(b *strings.Builder, a slog.Attr) {
	if a.Equal(slog.Attr{}) {
		return
	}
	v := a.Value.Resolve().String()
	if strings.ContainsAny(v, " \t\n\"=") || v == "" {
		v = strconv.Quote(v)
	}
	b.WriteString(" " + a.Key + "=" + v)
}

func (h *lineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		writeAttr(&b, a)
	}
	h2 := *h
	h2.attrs = b.String()
	return &h2
}

// WithGroup is not used by the launcher; grouped attributes are written flat.
func (h *lineHandler) WithGroup(string) slog.Handler { return h }

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}
