package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"time"
	"unsafe"
)

// Context types that keep their parent elsewhere than in their first word, as wrappers
// in real programs do: the launcher learns where from the binary (offsets.ContextParents).

// tagged embeds its parent after other fields; it is used by value.
type tagged struct {
	id   uint64
	name string
	context.Context
}

// holder keeps its parent in a named field that is not its first.
type holder struct {
	hits   int
	parent context.Context
}

func (h *holder) Deadline() (time.Time, bool)       { return h.parent.Deadline() }
func (h *holder) Done() <-chan struct{}             { return h.parent.Done() }
func (h *holder) Err() error                        { return h.parent.Err() }
func (h *holder) Value(key interface{}) interface{} { return h.parent.Value(key) }

// nested keeps its parent in a struct field's field.
type nested struct {
	id    int
	inner struct {
		n      int
		parent context.Context
	}
}

func (c *nested) Deadline() (time.Time, bool)       { return c.inner.parent.Deadline() }
func (c *nested) Done() <-chan struct{}             { return c.inner.parent.Done() }
func (c *nested) Err() error                        { return c.inner.parent.Err() }
func (c *nested) Value(key interface{}) interface{} { return c.inner.parent.Value(key) }

// base holds a parent after a field; pointed embeds a pointer to one, after a field.
type base struct {
	n int
	context.Context
}

type pointed struct {
	id int
	*base
}

// withLayers returns a context n layers above parent, the layers' kinds taken in turn
// from kinds: v WithValue, t WithTimeout, c WithCancel, w WithoutCancel (Go 1.21; a copy
// of it before), T tagged, h holder, n nested, p pointed. cancel releases the timers.
func withLayers(parent context.Context, n int, kinds string) (ctx context.Context, cancel func()) {
	if kinds == "" {
		kinds = "vtcwThnp"
	}
	var cancels []context.CancelFunc
	ctx = parent
	for i := 0; i < n; i++ {
		switch kinds[i%len(kinds)] {
		case 'v':
			ctx = context.WithValue(ctx, layerKey{}, i)
		case 't':
			var c context.CancelFunc
			ctx, c = context.WithTimeout(ctx, time.Minute)
			cancels = append(cancels, c)
		case 'c':
			var c context.CancelFunc
			ctx, c = context.WithCancel(ctx)
			cancels = append(cancels, c)
		case 'w':
			ctx = withoutCancel(ctx)
		case 'T':
			ctx = tagged{id: uint64(i), name: "layer", Context: ctx}
		case 'h':
			ctx = &holder{hits: i, parent: ctx}
		case 'n':
			c := &nested{id: i}
			c.inner.parent = ctx
			ctx = c
		case 'p':
			ctx = &pointed{id: i, base: &base{n: i, Context: ctx}}
		}
	}
	return ctx, func() {
		for _, c := range cancels {
			c()
		}
	}
}

type layerKey struct{}

// addContextRoutes adds routes whose calls to $UPSTREAM/echo carry contexts derived
// from the request's through many layers, or none:
//
//	/deep?layers=N[&kinds=K][&go=1]   GET $UPSTREAM/echo with a context N layers above
//	                                  the request's (withLayers); with go=1 from a
//	                                  goroutine the handler starts; its reply
//	/get                              http.Get($UPSTREAM/echo) in the handler: no
//	                                  request context; its reply
//	/detached                         GET $UPSTREAM/echo with context.Background() from
//	                                  a goroutine the handler starts; its reply
func addContextRoutes(mux *http.ServeMux, call func(ctx context.Context, method, url string, body io.Reader, length int64, header http.Header) ([]byte, int, error), reply func(http.ResponseWriter, []byte, int, error)) {
	upstream := os.Getenv("UPSTREAM")
	mux.HandleFunc("/deep", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		n, _ := strconv.Atoi(q.Get("layers"))
		ctx, cancel := withLayers(r.Context(), n, q.Get("kinds"))
		defer cancel()
		if q.Get("go") == "" {
			b, code, err := call(ctx, "GET", upstream+"/echo", nil, 0, nil)
			reply(w, b, code, err)
			return
		}
		done := make(chan struct{})
		var b []byte
		var code int
		var err error
		go func() {
			defer close(done)
			b, code, err = call(ctx, "GET", upstream+"/echo", nil, 0, nil)
		}()
		<-done
		reply(w, b, code, err)
	})
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(upstream + "/echo")
		if err != nil {
			reply(w, nil, 0, err)
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		reply(w, b, resp.StatusCode, err)
	})
	mux.HandleFunc("/detached", func(w http.ResponseWriter, r *http.Request) {
		done := make(chan struct{})
		var b []byte
		var code int
		var err error
		go func() {
			defer close(done)
			b, code, err = call(context.Background(), "GET", upstream+"/echo", nil, 0, nil)
		}()
		<-done
		reply(w, b, code, err)
	})
}

// contextParent is where a context type keeps its parent, as printContexts says it: at
// Offset in its value, or with Hop at Offset of what the pointer at Hop - 1 points to.
type contextParent struct {
	Itab   uintptr `json:"itab"`
	Hop    uintptr `json:"hop"`
	Offset uintptr `json:"offset"`
}

// printContexts prints, as JSON by %T name, the address of each context type's itab
// for context.Context in this process and where it keeps its parent (0 and 0: first),
// for the wrappers above and some standard contexts; then waits for stdin to close.
func printContexts() {
	out := map[string]contextParent{}
	add := func(c context.Context, hop, off uintptr) {
		out[fmt.Sprintf("%T", c)] = contextParent{Itab: (*[2]uintptr)(unsafe.Pointer(&c))[0], Hop: hop, Offset: off}
	}
	bg := context.Background()
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	add(ctx, 0, 0)
	add(context.WithValue(bg, layerKey{}, 1), 0, 0)
	// Go 1.20's timerCtx embeds *cancelCtx, whose parent is first; later ones cancelCtx.
	tctx, tcancel := context.WithTimeout(bg, time.Minute)
	defer tcancel()
	hop := uintptr(0)
	if f := reflect.TypeOf(tctx).Elem().Field(0); f.Type.Kind() == reflect.Ptr {
		hop = f.Offset + 1
	}
	add(tctx, hop, 0)
	var t tagged
	add(tagged{Context: bg}, 0, unsafe.Offsetof(t.Context))
	var h holder
	add(&holder{parent: bg}, 0, unsafe.Offsetof(h.parent))
	var n nested
	add(&nested{}, 0, unsafe.Offsetof(n.inner)+unsafe.Offsetof(n.inner.parent))
	var p pointed
	var b base
	add(&pointed{base: &base{Context: bg}}, unsafe.Offsetof(p.base)+1, unsafe.Offsetof(b.Context))
	json.NewEncoder(os.Stdout).Encode(out)
	io.Copy(io.Discard, os.Stdin)
}
