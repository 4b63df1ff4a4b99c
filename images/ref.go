// Package images wraps container images so that their entrypoint runs under the
// launcher: it reads an image from a registry, an archive, an OCI layout or an engine's
// store, adds one layer holding the launcher, puts the launcher in front of the
// entrypoint, and writes the result. The launcher itself never imports it.
package images

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Transport is where an image lives, named as podman and skopeo name it.
type Transport string

const (
	Registry      Transport = "docker"         // docker://HOST/REPO:TAG, or a plain HOST/REPO:TAG
	DockerArchive Transport = "docker-archive" // docker-archive:PATH[:REF], what docker save writes
	OCILayout     Transport = "oci"            // oci:DIR[:TAG]
	OCIArchive    Transport = "oci-archive"    // oci-archive:PATH[:TAG], a tar of an OCI layout
	DockerDaemon  Transport = "docker-daemon"  // docker-daemon:REF, the Docker Engine API
	Containerd    Transport = "containerd"     // containerd:REF, containerd's image store
)

// supported lists the transports in the order help and errors name them.
var supported = []Transport{Registry, DockerArchive, OCILayout, OCIArchive, DockerDaemon, Containerd}

// unsupported are skopeo's other transports: named so that a user gets "not supported"
// rather than "no such registry".
var unsupported = []string{"dir", "containers-storage", "ostree", "sif", "tarball", "docker-image"}

// Ref is a parsed image reference: a transport and, depending on it, a path, a name or
// both. Name is an image reference (HOST/REPO:TAG or @sha256:…) for the registry,
// the daemon and containerd, the optional tag inside an archive or a layout otherwise.
type Ref struct {
	Transport Transport
	Path      string
	Name      string
}

func (r Ref) String() string {
	switch {
	case r.Transport == Registry:
		return "docker://" + r.Name
	case r.Path == "":
		return string(r.Transport) + ":" + r.Name
	case r.Name == "":
		return string(r.Transport) + ":" + r.Path
	}
	return string(r.Transport) + ":" + r.Path + ":" + r.Name
}

// ParseRef reads a reference in skopeo's transport syntax. A reference without a
// transport is a registry's. As in skopeo, a path ends at its first colon.
func ParseRef(s string) (Ref, error) {
	if s == "" {
		return Ref{}, fmt.Errorf("empty image reference")
	}
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		return Ref{}, fmt.Errorf("image reference %q: a path, without its format: write docker-archive:%s, oci:%s or oci-archive:%s", s, s, s, s)
	}
	if rest, ok := strings.CutPrefix(s, "docker://"); ok {
		return registryRef(s, rest)
	}
	transport, rest, ok := strings.Cut(s, ":")
	if !ok {
		return registryRef(s, s)
	}
	switch Transport(transport) {
	case Registry:
		return Ref{}, fmt.Errorf("image reference %q: the registry transport is written docker://HOST/REPO:TAG", s)
	case DockerArchive, OCILayout, OCIArchive:
		path, tag, _ := strings.Cut(rest, ":")
		if path == "" {
			return Ref{}, fmt.Errorf("image reference %q: no path after %s:", s, transport)
		}
		r := Ref{Transport: Transport(transport), Path: path, Name: tag}
		if r.Transport == DockerArchive && tag != "" {
			if _, err := name.ParseReference(tag); err != nil {
				return Ref{}, fmt.Errorf("image reference %q: %w", s, err)
			}
		}
		return r, nil
	case DockerDaemon, Containerd:
		if _, err := name.ParseReference(rest); err != nil {
			return Ref{}, fmt.Errorf("image reference %q: %w", s, err)
		}
		return Ref{Transport: Transport(transport), Name: rest}, nil
	}
	for _, u := range unsupported {
		if transport == u {
			return Ref{}, fmt.Errorf("image reference %q: transport %s: is not supported (use %s)", s, transport, transportList())
		}
	}
	// HOST:PORT/REPO or REPO:TAG: a registry's; a path after the colon is a transport
	// nobody knows.
	if strings.HasPrefix(rest, "/") || strings.HasPrefix(rest, ".") || strings.HasPrefix(rest, "~") {
		return Ref{}, fmt.Errorf("image reference %q: unknown transport %s: (use %s)", s, transport, transportList())
	}
	return registryRef(s, s)
}

func registryRef(s, ref string) (Ref, error) {
	if _, err := name.ParseReference(ref); err != nil {
		if t, _, ok := strings.Cut(s, ":"); ok && !strings.ContainsAny(t, "./") {
			return Ref{}, fmt.Errorf("image reference %q: unknown transport %s: (use %s)", s, t, transportList())
		}
		return Ref{}, fmt.Errorf("image reference %q: %w", s, err)
	}
	return Ref{Transport: Registry, Name: ref}, nil
}

func transportList() string {
	var names []string
	for _, t := range supported {
		if t == Registry {
			names = append(names, "docker://")
			continue
		}
		names = append(names, string(t)+":")
	}
	return strings.Join(names, ", ")
}
