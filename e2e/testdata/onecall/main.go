// Command onecall makes one HTTP GET to the URL it is given (one client span under the
// launcher) and exits, printing the wall clock in nanoseconds just before it does: a
// one-call command, for the time the launcher takes to exit after its app. With
// ONECALL_H2C=1 the GET goes over plaintext HTTP/2 (prior knowledge).
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	client := http.DefaultClient
	if os.Getenv("ONECALL_H2C") == "1" {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		client = &http.Client{Transport: &http.Transport{Protocols: &p}}
	}
	res, err := client.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	fmt.Println(time.Now().UnixNano())
}
