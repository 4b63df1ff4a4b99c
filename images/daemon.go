package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// engine is a Docker Engine API endpoint (Docker's, or podman's compatible service),
// spoken to with its two image archive calls: GET /images/NAME/get (docker save) and
// POST /images/load (docker load). That is all a wrap needs of it, and plain HTTP keeps
// the engine's client library out of the launcher.
type engine struct {
	client *http.Client
	base   string // http://host[:port], or http://engine for a unix socket
	host   string // DOCKER_HOST as given, for errors
}

// newEngine reaches $DOCKER_HOST (unix:// or tcp://), else /var/run/docker.sock.
func newEngine() (*engine, error) {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("DOCKER_HOST %q: %w", host, err)
	}
	e := &engine{host: host}
	switch u.Scheme {
	case "unix":
		sock := u.Path
		e.base = "http://engine"
		e.client = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
		}}
	case "tcp", "http":
		e.base = "http://" + u.Host
		e.client = &http.Client{}
	default:
		return nil, fmt.Errorf("DOCKER_HOST %q: want unix:///PATH or tcp://HOST:PORT", host)
	}
	return e, nil
}

func (e *engine) do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, e.base+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-tar")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the engine at %s: %w (is it running? set DOCKER_HOST)", e.host, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var msg struct {
			Message string `json:"message"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &msg) != nil || msg.Message == "" {
			msg.Message = strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("the engine at %s: %s %s: %s", e.host, method, path, msg.Message)
	}
	return resp, nil
}

// readDaemon saves ref from the engine into a temporary archive and opens it.
func (o *IO) readDaemon(ctx context.Context, ref string) (Artifact, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return Artifact{}, fmt.Errorf("docker-daemon: needs a tagged name: %w", err)
	}
	e, err := newEngine()
	if err != nil {
		return Artifact{}, err
	}
	resp, err := e.do(ctx, http.MethodGet, "/images/"+url.PathEscape(ref)+"/get", nil)
	if err != nil {
		return Artifact{}, err
	}
	defer resp.Body.Close()
	f, err := os.CreateTemp("", "launch-wrap-*.tar")
	if err != nil {
		return Artifact{}, err
	}
	o.cleanup = append(o.cleanup, func() { os.Remove(f.Name()) })
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Artifact{}, fmt.Errorf("saving from the engine: %w", err)
	}
	a, closeArchive, err := readDockerArchive(ctx, f.Name(), tag.String(), o.Limits.orDefaults())
	if err != nil {
		// An engine may save a name as it stores it (docker.io/library/app:1 as app:1).
		a, closeArchive, err = readDockerArchive(ctx, f.Name(), "", o.Limits.orDefaults())
	}
	if err != nil {
		return Artifact{}, err
	}
	o.cleanup = append(o.cleanup, closeArchive)
	a.Name = ref
	return a, nil
}

// writeDaemon loads img into the engine under ref: the engine takes all of it or
// nothing.
func (o *IO) writeDaemon(ctx context.Context, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("docker-daemon: needs a tagged name: %w", err)
	}
	e, err := newEngine()
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeDockerArchive(pw, tag, img)) }()
	resp, err := e.do(ctx, http.MethodPost, "/images/load?quiet=1", pr)
	pr.CloseWithError(errors.New("the engine stopped reading"))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// The engine answers a stream of JSON messages; a failed load is one with an error.
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("the engine's answer to the load: %w", err)
		}
		if m.Error != "" || m.ErrorDetail.Message != "" {
			return fmt.Errorf("the engine refused the image: %s%s", m.Error, m.ErrorDetail.Message)
		}
	}
}
