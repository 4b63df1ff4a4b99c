package images

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// manifest is an image manifest as raw JSON members, so that an edit keeps every
// member it does not touch, including those go-containerregistry's types do not know.
type manifest struct {
	mediaType types.MediaType
	raw       map[string]json.RawMessage
}

func decodeManifest(img v1.Image) (*manifest, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("reading the manifest: %w", err)
	}
	obj, err := decodeObject(raw, "manifest")
	if err != nil {
		return nil, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, err
	}
	switch mt {
	case types.DockerManifestSchema2, types.OCIManifestSchema1:
	default:
		return nil, fmt.Errorf("manifest media type %s: not an image manifest this wraps (Docker schema 2 or OCI)", mt)
	}
	return &manifest{mediaType: mt, raw: obj}, nil
}

// editedImage is an image made of a base image's layers, minus the launcher layer
// Unwrap takes away or plus the one WrapImage adds, with a new config and manifest. Its
// layers are the base's own values, so that a registry push can mount them from the
// source repository instead of uploading them.
type editedImage struct {
	base     v1.Image
	added    v1.Layer // nil when none
	config   []byte
	manifest []byte
	parsed   *v1.Manifest
	mt       types.MediaType
}

var _ v1.Image = (*editedImage)(nil)

func newImage(base v1.Image, mf *manifest, config []byte, added v1.Layer) (v1.Image, error) {
	digest, size, err := v1.SHA256(bytes.NewReader(config))
	if err != nil {
		return nil, err
	}
	var desc map[string]json.RawMessage
	if err := decodeOptional(mf.raw, "config", &desc); err != nil {
		return nil, err
	}
	if desc == nil {
		return nil, fmt.Errorf("the manifest has no config descriptor")
	}
	desc["digest"] = mustJSON(digest)
	desc["size"] = mustJSON(size)
	delete(desc, "data") // an embedded copy of the old config would be stale
	mf.raw["config"] = mustJSON(desc)
	raw, err := json.Marshal(mf.raw)
	if err != nil {
		return nil, err
	}
	parsed, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("the edited manifest: %w", err)
	}
	return &editedImage{base: base, added: added, config: config, manifest: raw, parsed: parsed, mt: mf.mediaType}, nil
}

func (i *editedImage) MediaType() (types.MediaType, error) { return i.mt, nil }
func (i *editedImage) RawManifest() ([]byte, error)        { return i.manifest, nil }
func (i *editedImage) Manifest() (*v1.Manifest, error)     { return i.parsed.DeepCopy(), nil }
func (i *editedImage) RawConfigFile() ([]byte, error)      { return i.config, nil }
func (i *editedImage) Size() (int64, error)                { return int64(len(i.manifest)), nil }
func (i *editedImage) ConfigName() (v1.Hash, error)        { return i.parsed.Config.Digest, nil }
func (i *editedImage) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(i.manifest))
	return h, err
}

func (i *editedImage) ConfigFile() (*v1.ConfigFile, error) {
	return v1.ParseConfigFile(bytes.NewReader(i.config))
}

func (i *editedImage) Layers() ([]v1.Layer, error) {
	layers := make([]v1.Layer, 0, len(i.parsed.Layers))
	for _, d := range i.parsed.Layers {
		l, err := i.LayerByDigest(d.Digest)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	return layers, nil
}

func (i *editedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	if i.added != nil {
		if d, err := i.added.Digest(); err == nil && d == h {
			return i.added, nil
		}
	}
	if h == i.parsed.Config.Digest {
		return partial.ConfigLayer(i)
	}
	return i.base.LayerByDigest(h)
}

func (i *editedImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	cf, err := i.ConfigFile()
	if err != nil {
		return nil, err
	}
	for n, id := range cf.RootFS.DiffIDs {
		if id == h && n < len(i.parsed.Layers) {
			return i.LayerByDigest(i.parsed.Layers[n].Digest)
		}
	}
	return nil, fmt.Errorf("no layer with diff ID %s", h)
}
