package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Routes that make outgoing calls to the server named by $UPSTREAM (http://host:port),
// and the endpoints those calls reach:
//
//	/proxy        GET $UPSTREAM/echo with the request's context; its reply. Query:
//	              to=PATH|URL (instead of /echo), timeout=DURATION (for the call),
//	              traceparent=VALUE (the app sets this header itself)
//	/fanout       two goroutines GET $UPSTREAM/echo with contexts derived from the
//	              request's; both replies
//	/background   GET $UPSTREAM/echo with context.Background(), in the handler
//	/post         POST the request body to $UPSTREAM/echo (streamed, with the
//	              incoming length or chunked); its reply
//	/refused      GET a port nobody listens on; 502 with the error
//	/echo         reply JSON: the traceparent and tracestate received, how many
//	              of each header, the body's length and SHA-256
//	/blob?n=N     reply N bytes of blobByte(i)
//	/deep, /get, /detached: addContextRoutes
//	/sleep?d=D    reply after D
//	/rp/PATH      net/http/httputil's ReverseProxy to $UPSTREAM/PATH: the request
//	              goes on with its headers (traceparent, tracestate), as any Go proxy
//	              forwards them
func addClientRoutes(mux *http.ServeMux) {
	upstream := os.Getenv("UPSTREAM")
	if u, err := url.Parse(upstream); err == nil && upstream != "" {
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256}
		mux.Handle("/rp/", http.StripPrefix("/rp", rp))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, TLSClientConfig: &tls.Config{}}}
	call := func(ctx context.Context, method, url string, body io.Reader, length int64, header http.Header) ([]byte, int, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, body)
		if err != nil {
			return nil, 0, err
		}
		req.ContentLength = length
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return b, resp.StatusCode, err
	}
	reply := func(w http.ResponseWriter, b []byte, code int, err error) {
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(code)
		w.Write(b)
	}
	mux.HandleFunc("/proxy", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		target := upstream + "/echo"
		if to := q.Get("to"); strings.HasPrefix(to, "http") {
			target = to
		} else if to != "" {
			target = upstream + to
		}
		ctx := r.Context()
		if d, err := time.ParseDuration(q.Get("timeout")); err == nil {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		header := http.Header{}
		if tp := q.Get("traceparent"); tp != "" {
			header.Set("Traceparent", tp)
		}
		b, code, err := call(ctx, "GET", target, nil, 0, header)
		reply(w, b, code, err)
	})
	mux.HandleFunc("/fanout", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		var wg sync.WaitGroup
		out := make([][]byte, 2)
		errs := make([]error, 2)
		for i := range out {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				out[i], _, errs[i] = call(context.WithValue(ctx, fanoutKey{}, i), "GET", upstream+"/echo", nil, 0, nil)
			}(i)
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				reply(w, nil, 0, err)
				return
			}
		}
		fmt.Fprintf(w, "[%s,%s]", out[0], out[1])
	})
	mux.HandleFunc("/background", func(w http.ResponseWriter, r *http.Request) {
		b, code, err := call(context.Background(), "GET", upstream+"/echo", nil, 0, nil)
		reply(w, b, code, err)
	})
	mux.HandleFunc("/post", func(w http.ResponseWriter, r *http.Request) {
		b, code, err := call(r.Context(), "POST", upstream+"/echo", r.Body, r.ContentLength, nil)
		reply(w, b, code, err)
	})
	mux.HandleFunc("/refused", func(w http.ResponseWriter, r *http.Request) {
		b, code, err := call(r.Context(), "GET", "http://127.0.0.1:1/nothing", nil, 0, nil)
		reply(w, b, code, err)
	})
	addContextRoutes(mux, call, reply)
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		json.NewEncoder(w).Encode(map[string]any{
			"traceparent":       r.Header.Get("Traceparent"),
			"traceparent_count": len(r.Header.Values("Traceparent")),
			"tracestate":        r.Header.Get("Tracestate"),
			"tracestate_count":  len(r.Header.Values("Tracestate")),
			"length":            n,
			"proto":             r.Proto,
			"sha256":            hex.EncodeToString(h.Sum(nil)),
		})
	})
	mux.HandleFunc("/blob", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		buf := make([]byte, 64<<10)
		for i := 0; i < n; i += len(buf) {
			chunk := buf
			if n-i < len(chunk) {
				chunk = chunk[:n-i]
			}
			for j := range chunk {
				chunk[j] = blobByte(i + j)
			}
			w.Write(chunk)
		}
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
	})
}

// blobByte is byte i of a /blob reply: not periodic in any small power of two.
func blobByte(i int) byte { return byte(i*7 + i/251) }

type fanoutKey struct{}
