// Command httpserver is the Go program the tests analyse and trace: a net/http server,
// built with several Go toolchains and build modes (plain, stripped, PIE, cgo, arm64).
// It is its own module, with no dependencies, so that any toolchain builds it.
//
//	httpserver [ADDR]   serve on ADDR (default 127.0.0.1:8080); with
//	                    HTTPSERVER_TLS=ADDR2 the same over TLS on ADDR2 too (HTTP/1.1 and
//	                    HTTP/2 by ALPN), with the certificate and key in the PEM files
//	                    HTTPSERVER_TLS_CERT and HTTPSERVER_TLS_KEY
//	httpserver offsets  print, as JSON, the struct field offsets reflect reports for
//	                    the fields the probes read
//	httpserver types    print, as JSON, the addresses of some error types' runtime
//	                    type descriptors by their %T names; then wait for stdin to close
//	httpserver contexts print, as JSON, some context types' itabs and where each keeps
//	                    its parent (printContexts); then wait for stdin to close
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"unsafe"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "offsets" {
		printOffsets()
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "types" {
		printTypes()
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "contexts" {
		printContexts()
		return
	}
	addr := "127.0.0.1:8080"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	mux := routes()
	if tlsAddr := os.Getenv("HTTPSERVER_TLS"); tlsAddr != "" {
		go func() {
			log.Fatal(http.ListenAndServeTLS(tlsAddr, os.Getenv("HTTPSERVER_TLS_CERT"), os.Getenv("HTTPSERVER_TLS_KEY"), mux))
		}()
	}
	log.Fatal(serve(addr, mux))
}

func routes() *http.ServeMux {
	mux := http.NewServeMux()
	addPatternRoutes(mux)
	addClientRoutes(mux)
	addH2CRoutes(mux)
	addWorkRoute(mux)
	addSQLRoute(mux)
	addHijackRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "root") })
	return mux
}

func printOffsets() {
	out := map[string]uintptr{}
	add := func(t reflect.Type, prefix string, fields ...string) {
		for _, f := range fields {
			if sf, ok := t.FieldByName(f); ok {
				out[prefix+"."+f] = sf.Offset
			}
		}
	}
	req := reflect.TypeOf(http.Request{})
	add(req, "net/http.Request", "Method", "URL", "ProtoMajor", "ProtoMinor", "Header", "Host", "RemoteAddr", "TLS", "Pattern", "pat", "ctx")
	if pat, ok := req.FieldByName("pat"); ok {
		add(pat.Type.Elem(), "net/http.pattern", "str")
	}
	add(reflect.TypeOf(url.URL{}), "net/url.URL", "Scheme", "Host", "Path", "RawQuery")
	add(reflect.TypeOf(http.Response{}), "net/http.Response", "StatusCode", "ProtoMajor", "ProtoMinor")
	sqlOffsets(add)

	// net/http.response is unexported: a real request hands one to a handler.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		add(reflect.TypeOf(w).Elem(), "net/http.response", "status")
		close(done)
	}))
	resp, err := http.Get("http://" + l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	<-done

	// A TCP connection's addresses (the database/sql probe reads the remote one):
	// net.conn and net.netFD are unexported; a real connection has them.
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	tcp := reflect.TypeOf(c).Elem()
	add(tcp, "net.TCPConn", "conn")
	if conn, ok := tcp.FieldByName("conn"); ok {
		add(conn.Type, "net.conn", "fd")
		if fd, ok := conn.Type.FieldByName("fd"); ok {
			add(fd.Type.Elem(), "net.netFD", "laddr", "raddr")
		}
	}
	add(reflect.TypeOf(net.TCPAddr{}), "net.TCPAddr", "IP", "Port")
	add(reflect.TypeOf(io.EOF).Elem(), "errors.errorString", "s") // read by the gRPC probe
	c.Close()
	json.NewEncoder(os.Stdout).Encode(out)
}

// printTypes prints the address of the runtime type descriptor of some errors (an
// interface's type word), keyed by what %T prints for them.
func printTypes() {
	out := map[string]uintptr{}
	for _, err := range []error{&net.OpError{}, &url.Error{}, context.DeadlineExceeded, http.ErrServerClosed, &json.SyntaxError{}, os.ErrNotExist} {
		var v any = err // an empty interface's first word is the type itself
		out[fmt.Sprintf("%T", err)] = (*[2]uintptr)(unsafe.Pointer(&v))[0]
	}
	json.NewEncoder(os.Stdout).Encode(out)
	io.Copy(io.Discard, os.Stdin)
}
