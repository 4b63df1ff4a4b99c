package images

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/otel-go-launcher/otel-go-launcher/images/internal/rawconfig"
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
	obj, err := rawconfig.Object(raw, "manifest")
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
// source repository instead of uploading them. The manifest is made when first asked
// for: a docker archive's image has none until its layers are compressed, and writing
// another docker archive needs only the config and the layers.
type editedImage struct {
	base   v1.Image
	added  v1.Layer // nil when none
	config []byte
	edit   func(*manifest) error // turns the base's manifest into this one's

	once     sync.Once
	manifest []byte
	parsed   *v1.Manifest
	err      error
}

var _ v1.Image = (*editedImage)(nil)

func newImage(base v1.Image, config []byte, added v1.Layer, edit func(*manifest) error) (v1.Image, error) {
	return &editedImage{base: base, added: added, config: config, edit: edit}, nil
}

func (i *editedImage) computeManifest() error {
	i.once.Do(func() {
		mf, err := decodeManifest(i.base)
		if err != nil {
			i.err = err
			return
		}
		if err := i.edit(mf); err != nil {
			i.err = err
			return
		}
		digest, size, err := v1.SHA256(bytes.NewReader(i.config))
		if err != nil {
			i.err = err
			return
		}
		var desc map[string]json.RawMessage
		if err := decodeOptional(mf.raw, "config", &desc); err != nil {
			i.err = err
			return
		}
		if desc == nil {
			i.err = fmt.Errorf("the manifest has no config descriptor")
			return
		}
		desc["digest"] = rawconfig.Must(digest)
		desc["size"] = rawconfig.Must(size)
		delete(desc, "data") // an embedded copy of the old config would be stale
		mf.raw["config"] = rawconfig.Must(desc)
		if i.manifest, i.err = json.Marshal(mf.raw); i.err != nil {
			return
		}
		if i.parsed, err = v1.ParseManifest(bytes.NewReader(i.manifest)); err != nil {
			i.err = fmt.Errorf("the edited manifest: %w", err)
		}
	})
	return i.err
}

func (i *editedImage) MediaType() (types.MediaType, error) { return i.base.MediaType() }
func (i *editedImage) RawConfigFile() ([]byte, error)      { return i.config, nil }

func (i *editedImage) RawManifest() ([]byte, error) {
	if err := i.computeManifest(); err != nil {
		return nil, err
	}
	return i.manifest, nil
}

func (i *editedImage) Manifest() (*v1.Manifest, error) {
	if err := i.computeManifest(); err != nil {
		return nil, err
	}
	return i.parsed.DeepCopy(), nil
}

func (i *editedImage) Size() (int64, error) {
	raw, err := i.RawManifest()
	return int64(len(raw)), err
}

func (i *editedImage) Digest() (v1.Hash, error) {
	raw, err := i.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	return h, err
}

func (i *editedImage) ConfigName() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(i.config))
	return h, err
}

func (i *editedImage) ConfigFile() (*v1.ConfigFile, error) {
	return v1.ParseConfigFile(bytes.NewReader(i.config))
}

func (i *editedImage) Layers() ([]v1.Layer, error) {
	cf, err := i.ConfigFile()
	if err != nil {
		return nil, err
	}
	layers := make([]v1.Layer, 0, len(cf.RootFS.DiffIDs))
	for _, d := range cf.RootFS.DiffIDs {
		l, err := i.LayerByDiffID(d)
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
	if c, _ := i.ConfigName(); c == h {
		return partial.ConfigLayer(i)
	}
	return i.base.LayerByDigest(h)
}

func (i *editedImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	if i.added != nil {
		if d, err := i.added.DiffID(); err == nil && d == h {
			return i.added, nil
		}
	}
	return i.base.LayerByDiffID(h)
}
