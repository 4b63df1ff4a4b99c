package images

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/otel-go-launcher/otel-go-launcher/images/bundle"
	"github.com/otel-go-launcher/otel-go-launcher/images/internal/rawconfig"
)

// LauncherPath is where a wrapped image holds the launcher: a directory of its own at
// the root, which no image uses, so that the added layer hides nothing of the image.
const LauncherPath = bundle.LauncherPath

// wrapCreatedBy names the history entry of the launcher's layer; its comment is the
// marker that lets a later wrap take the launcher out again (an upgrade, never a
// second launcher). History is part of the config, which every transport keeps,
// unlike manifest annotations (docker save drops them) or labels (which users read).
const wrapCreatedBy = "otel-go-launcher wrap"

// Manifest annotations a wrapped image carries (OCI image-spec, annotations.md).
const (
	AnnotationBaseName   = "org.opencontainers.image.base.name"
	AnnotationBaseDigest = "org.opencontainers.image.base.digest"
)

// marker is what the launcher's history entry records of the config before the wrap:
// the fields the wrap changed, verbatim (null when they were absent).
type marker struct {
	Launcher   string          `json:"launcher"` // the launcher's version
	Entrypoint json.RawMessage `json:"entrypoint"`
	User       json.RawMessage `json:"user"`
	Env        json.RawMessage `json:"env"`
}

// Options say how an image is wrapped.
type Options struct {
	// Env are KEY=VALUE pairs baked into the image's config (OTEL_SERVICE_NAME...),
	// replacing a variable of the same name.
	Env []string
	// Version is the launcher's version, recorded in the marker.
	Version string
	// BaseName is the source's reference, for the base.name annotation.
	BaseName string
}

// Platform is an image's os/architecture[/variant], from its config.
func Platform(img v1.Image) (v1.Platform, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Platform{}, fmt.Errorf("reading the image config: %w", err)
	}
	return v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}, nil
}

// WrapImage returns img with the launcher layer on top and the launcher in front of
// its entrypoint. The other layers are img's own, byte for byte. An image wrapped
// before has its launcher layer replaced.
func WrapImage(img v1.Image, launcher v1.Layer, o Options) (v1.Image, error) {
	base, err := Unwrap(img)
	if err != nil {
		return nil, err
	}
	rawConfig, err := base.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the image config: %w", err)
	}
	cfg, err := rawconfig.Object(rawConfig, "image config")
	if err != nil {
		return nil, err
	}
	if os := stringField(cfg, "os"); os != "linux" {
		return nil, fmt.Errorf("the image is for %s: the launcher runs Linux programs only", orUnknown(os))
	}
	run, err := configObject(cfg)
	if err != nil {
		return nil, err
	}
	m := marker{Launcher: o.Version, Entrypoint: rawOrNull(run["Entrypoint"]), User: rawOrNull(run["User"]), Env: rawOrNull(run["Env"])}

	var entrypoint, env []string
	var user string
	if err := decodeOptional(run, "Entrypoint", &entrypoint); err != nil {
		return nil, err
	}
	if err := decodeOptional(run, "Env", &env); err != nil {
		return nil, err
	}
	if err := decodeOptional(run, "User", &user); err != nil {
		return nil, err
	}
	launch := []string{LauncherPath}
	if !isRoot(user) {
		// The launcher needs root for its capabilities; it starts the app as the
		// image's user, as the runtime did.
		launch = append(launch, "--user", user)
		run["User"] = rawconfig.Must("0:0")
	}
	run["Entrypoint"] = rawconfig.Must(append(append(launch, "--"), entrypoint...))
	if len(o.Env) > 0 {
		run["Env"] = rawconfig.Must(rawconfig.SetEnv(env, o.Env))
	}
	cfg["config"] = rawconfig.Must(run)

	diffID, err := launcher.DiffID()
	if err != nil {
		return nil, fmt.Errorf("the launcher layer: %w", err)
	}
	if err := appendRootFS(cfg, diffID); err != nil {
		return nil, err
	}
	comment, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var history []json.RawMessage
	if err := decodeOptional(cfg, "history", &history); err != nil {
		return nil, err
	}
	entry := map[string]any{"created_by": wrapCreatedBy, "comment": string(comment)}
	if c, ok := cfg["created"]; ok {
		entry["created"] = c // the image's own time: the same input wraps to the same digest
	}
	cfg["history"] = rawconfig.Must(append(history, rawconfig.Must(entry)))
	newConfig, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}

	upgrade := base != img
	return newImage(base, newConfig, launcher, func(mf *manifest) error {
		desc, err := layerDescriptor(launcher, mf)
		if err != nil {
			return err
		}
		var layers []json.RawMessage
		if err := decodeOptional(mf.raw, "layers", &layers); err != nil {
			return err
		}
		mf.raw["layers"] = rawconfig.Must(append(layers, rawconfig.Must(desc)))
		annotations := map[string]string{}
		if err := decodeOptional(mf.raw, "annotations", &annotations); err != nil {
			return err
		}
		// A first wrap names its source; an upgrade keeps naming the image first
		// wrapped, unless a transport dropped the annotations on the way.
		if !upgrade || annotations[AnnotationBaseDigest] == "" {
			baseDigest, err := base.Digest()
			if err != nil {
				return err
			}
			annotations[AnnotationBaseDigest] = baseDigest.String()
			delete(annotations, AnnotationBaseName)
			if o.BaseName != "" && !upgrade {
				annotations[AnnotationBaseName] = o.BaseName
			}
		}
		mf.raw["annotations"] = rawconfig.Must(annotations)
		return nil
	})
}

// Wrapped says whether img carries a launcher layer, and which launcher version.
func Wrapped(img v1.Image) (bool, string, error) {
	m, _, err := findMarker(img)
	if err != nil || m == nil {
		return false, "", err
	}
	return true, m.Launcher, nil
}

// Unwrap returns img without its launcher layer and with its config as before the
// wrap, or img itself if it was never wrapped.
func Unwrap(img v1.Image) (v1.Image, error) {
	m, cfg, err := findMarker(img)
	if err != nil || m == nil {
		return img, err
	}
	run, err := configObject(cfg)
	if err != nil {
		return nil, err
	}
	restore := func(key string, v json.RawMessage) {
		if bytes.Equal(v, []byte("null")) || len(v) == 0 {
			delete(run, key)
			return
		}
		run[key] = v
	}
	restore("Entrypoint", m.Entrypoint)
	restore("User", m.User)
	restore("Env", m.Env)
	cfg["config"] = rawconfig.Must(run)

	var history []json.RawMessage
	var rootfs map[string]json.RawMessage
	var diffIDs []json.RawMessage
	if err := decodeOptional(cfg, "history", &history); err != nil {
		return nil, err
	}
	if err := decodeOptional(cfg, "rootfs", &rootfs); err != nil {
		return nil, err
	}
	if err := decodeOptional(rootfs, "diff_ids", &diffIDs); err != nil {
		return nil, err
	}
	if len(diffIDs) == 0 || len(history) == 0 {
		return nil, fmt.Errorf("the image's launcher layer is missing: %d layers", len(diffIDs))
	}
	cfg["history"] = rawconfig.Must(history[:len(history)-1])
	rootfs["diff_ids"] = rawconfig.Must(diffIDs[:len(diffIDs)-1])
	cfg["rootfs"] = rawconfig.Must(rootfs)
	newConfig, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	return newImage(img, newConfig, nil, func(mf *manifest) error {
		var layers []json.RawMessage
		if err := decodeOptional(mf.raw, "layers", &layers); err != nil {
			return err
		}
		if len(layers) != len(diffIDs) {
			return fmt.Errorf("the image's launcher layer is not its last: %d layers, %d diff IDs", len(layers), len(diffIDs))
		}
		mf.raw["layers"] = rawconfig.Must(layers[:len(layers)-1])
		return nil
	})
}

// findMarker returns the wrap marker of img's last history entry, and img's config.
func findMarker(img v1.Image) (*marker, map[string]json.RawMessage, error) {
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("reading the image config: %w", err)
	}
	cfg, err := rawconfig.Object(raw, "image config")
	if err != nil {
		return nil, nil, err
	}
	var history []struct {
		CreatedBy string `json:"created_by"`
		Comment   string `json:"comment"`
	}
	if err := decodeOptional(cfg, "history", &history); err != nil {
		return nil, nil, err
	}
	if len(history) == 0 || history[len(history)-1].CreatedBy != wrapCreatedBy {
		return nil, cfg, nil
	}
	var m marker
	if err := json.Unmarshal([]byte(history[len(history)-1].Comment), &m); err != nil {
		return nil, nil, fmt.Errorf("the image's %q history entry: %w", wrapCreatedBy, err)
	}
	return &m, cfg, nil
}

// isRoot says whether a config's User runs as root with root's group: the runtime's
// default, which the launcher needs anyway.
func isRoot(user string) bool {
	u, g, _ := strings.Cut(user, ":")
	return (u == "" || u == "0" || u == "root") && (g == "" || g == "0" || g == "root")
}

func appendRootFS(cfg map[string]json.RawMessage, diffID v1.Hash) error {
	rootfs := map[string]json.RawMessage{}
	if err := decodeOptional(cfg, "rootfs", &rootfs); err != nil {
		return err
	}
	var ids []string
	if err := decodeOptional(rootfs, "diff_ids", &ids); err != nil {
		return err
	}
	rootfs["type"] = rawconfig.Must("layers")
	rootfs["diff_ids"] = rawconfig.Must(append(ids, diffID.String()))
	cfg["rootfs"] = rawconfig.Must(rootfs)
	return nil
}

// layerDescriptor describes the launcher layer in the manifest's own media types:
// Docker's for a Docker manifest, OCI's for an OCI one.
func layerDescriptor(l v1.Layer, mf *manifest) (v1.Descriptor, error) {
	digest, err := l.Digest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	size, err := l.Size()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt := types.OCILayer
	if mf.mediaType == types.DockerManifestSchema2 {
		mt = types.DockerLayer
	}
	return v1.Descriptor{MediaType: mt, Size: size, Digest: digest}, nil
}

// configObject is the config's "config" member, the run settings.
func configObject(cfg map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	run := map[string]json.RawMessage{}
	if err := decodeOptional(cfg, "config", &run); err != nil {
		return nil, err
	}
	if run == nil {
		run = map[string]json.RawMessage{}
	}
	return run, nil
}

// decodeOptional decodes obj[key] into v; an absent or null member leaves v as it is.
func decodeOptional(obj map[string]json.RawMessage, key string, v any) error {
	if err := rawconfig.Optional(obj, key, v); err != nil {
		return fmt.Errorf("the image's %w", err)
	}
	return nil
}

func stringField(obj map[string]json.RawMessage, key string) string {
	var s string
	_ = decodeOptional(obj, key, &s)
	return s
}

func rawOrNull(r json.RawMessage) json.RawMessage {
	if len(r) == 0 {
		return json.RawMessage("null")
	}
	return r
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown OS"
	}
	return s
}
