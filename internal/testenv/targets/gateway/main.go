// Command gateway is an API gateway as services write them, for the tests of whole
// traces through one: TLS in front (HTTP/1.1 and HTTP/2, a certificate of its own made
// at start), a middleware chain that wraps the request's context in LAYERS layers
// (values, deadlines, cancels, and context types of its own that keep their parent
// elsewhere than first), then
//
//	/api/X       httputil.ReverseProxy to $BACKEND/X (plain HTTP): the incoming
//	             traceparent and tracestate are forwarded, as proxies do
//	/aggregate   two calls to $BACKEND/echo from the handler: one with the request's
//	             context, one with http.Get (no context); their replies as a JSON array
//	/healthz     "ok", outside the chain
//
// Usage: gateway ADDR; BACKEND=http://HOST:PORT, LAYERS (default 14), TLS=0 for
// plaintext. It is its own module, with no dependencies, so that any toolchain builds it.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: gateway ADDR")
	}
	backend, err := url.Parse(os.Getenv("BACKEND"))
	if err != nil || backend.Host == "" {
		log.Fatalf("BACKEND %q: want http://HOST:PORT", os.Getenv("BACKEND"))
	}
	layers := 14
	if s := os.Getenv("LAYERS"); s != "" {
		if layers, err = strconv.Atoi(s); err != nil {
			log.Fatalf("LAYERS %q: %v", s, err)
		}
	}
	api := http.NewServeMux()
	api.Handle("/api/", http.StripPrefix("/api", httputil.NewSingleHostReverseProxy(backend)))
	api.HandleFunc("/aggregate", aggregate(backend.String()+"/echo"))
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.Handle("/", chain(api, layers))
	srv := &http.Server{Addr: os.Args[1], Handler: mux}
	if os.Getenv("TLS") == "0" {
		log.Fatal(srv.ListenAndServe())
	}
	cert, err := selfSigned()
	if err != nil {
		log.Fatal(err)
	}
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	log.Fatal(srv.ListenAndServeTLS("", ""))
}

// aggregate calls url twice: with the request's context, then without any.
func aggregate(url string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var replies []json.RawMessage
		get := func(req *http.Request, err error) *http.Response {
			if err != nil {
				return nil
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return nil
			}
			return resp
		}
		for i, resp := range []func() *http.Response{
			func() *http.Response { return get(http.NewRequestWithContext(r.Context(), "GET", url, nil)) },
			func() *http.Response { return get(http.NewRequest("GET", url, nil)) }, // no context: http.Get's
		} {
			res := resp()
			if res == nil {
				return
			}
			b, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || !json.Valid(b) {
				http.Error(w, fmt.Sprintf("call %d: %v %q", i, err, b), http.StatusBadGateway)
				return
			}
			replies = append(replies, b)
		}
		json.NewEncoder(w).Encode(replies)
	}
}

type (
	requestIDKey struct{}
	userKey      struct{}
)

// tenantCtx is a context type of the app's own that keeps its parent after a field.
type tenantCtx struct {
	tenant string
	context.Context
}

func (c *tenantCtx) Value(key any) any {
	if key == "tenant" {
		return c.tenant
	}
	return c.Context.Value(key)
}

// auditCtx keeps its parent in a named field.
type auditCtx struct {
	started time.Time
	parent  context.Context
}

func (c *auditCtx) Deadline() (time.Time, bool) { return c.parent.Deadline() }
func (c *auditCtx) Done() <-chan struct{}       { return c.parent.Done() }
func (c *auditCtx) Err() error                  { return c.parent.Err() }
func (c *auditCtx) Value(key any) any           { return c.parent.Value(key) }

// chain wraps next in n middlewares, each deriving one context layer of its own kind,
// the way logging, auth, tenancy, timeouts and tracing middleware stack up.
func chain(next http.Handler, n int) http.Handler {
	for i := n - 1; i >= 0; i-- {
		next = layer(next, i)
	}
	return next
}

func layer(next http.Handler, i int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		switch i % 6 {
		case 0:
			ctx = context.WithValue(ctx, requestIDKey{}, i)
		case 1:
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Minute)
			defer cancel()
		case 2:
			ctx = &tenantCtx{tenant: "t" + strconv.Itoa(i), Context: ctx}
		case 3:
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
		case 4:
			ctx = &auditCtx{started: time.Now(), parent: ctx}
		case 5:
			ctx = context.WithValue(ctx, userKey{}, "u")
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// selfSigned makes a certificate for 127.0.0.1 and localhost, valid for a day.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gateway"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
