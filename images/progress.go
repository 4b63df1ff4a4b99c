package images

import (
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// counter reports bytes as the layers of an artifact are read for a write, for the
// destinations whose writers report nothing themselves (OCI layouts, containerd).
type counter struct {
	mu     sync.Mutex
	done   int64
	total  int64
	report func(complete, total int64)
}

// add counts n bytes. Writers read layers in parallel: reports are made under the
// lock, one at a time, as IO.Progress promises.
func (c *counter) add(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done += n
	c.report(min(c.done, c.total), c.total)
}

// layerTotal is the compressed size of every layer of a, the bytes a write moves.
func layerTotal(a Artifact) (int64, error) {
	var total int64
	err := eachImage(a, func(img v1.Image) error {
		layers, err := img.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			n, err := l.Size()
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	return total, err
}

// eachImage calls f for a's image or every distinct image of its index.
func eachImage(a Artifact, f func(v1.Image) error) error {
	if a.Index == nil {
		return f(a.Image)
	}
	seen := map[v1.Hash]bool{}
	var walk func(idx v1.ImageIndex) error
	walk = func(idx v1.ImageIndex) error {
		im, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, d := range im.Manifests {
			if seen[d.Digest] {
				continue
			}
			seen[d.Digest] = true
			switch {
			case d.MediaType.IsIndex():
				child, err := idx.ImageIndex(d.Digest)
				if err == nil {
					err = walk(child)
				}
				if err != nil {
					return err
				}
			case d.MediaType.IsImage():
				img, err := idx.Image(d.Digest)
				if err == nil {
					err = f(img)
				}
				if err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(a.Index)
}

// counted returns a whose layers count what is read of their compressed form.
func (c *counter) counted(a Artifact) Artifact {
	if a.Index != nil {
		a.Index = &countedIndex{imageIndex: a.Index, c: c}
		return a
	}
	a.Image = &countedImage{Image: a.Image, c: c}
	return a
}

// countedIndex embeds the index under another name: v1.ImageIndex has a method
// ImageIndex, which an embedded field of that name would hide.
type countedIndex struct {
	imageIndex
	c *counter
}

// imageIndex is v1.ImageIndex, named so that it can be embedded.
type imageIndex = v1.ImageIndex

func (x *countedIndex) Image(h v1.Hash) (v1.Image, error) {
	img, err := x.imageIndex.Image(h)
	if err != nil {
		return nil, err
	}
	return &countedImage{Image: img, c: x.c}, nil
}

func (x *countedIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	idx, err := x.imageIndex.ImageIndex(h)
	if err != nil {
		return nil, err
	}
	return &countedIndex{imageIndex: idx, c: x.c}, nil
}

type countedImage struct {
	v1.Image
	c *counter
}

func (i *countedImage) Layers() ([]v1.Layer, error) {
	layers, err := i.Image.Layers()
	for n, l := range layers {
		layers[n] = &countedLayer{Layer: l, c: i.c}
	}
	return layers, err
}

func (i *countedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := i.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return &countedLayer{Layer: l, c: i.c}, nil
}

type countedLayer struct {
	v1.Layer
	c *counter
}

func (l *countedLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, c: l.c}, nil
}

type countingReader struct {
	io.ReadCloser
	c *counter
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.c.add(int64(n))
	}
	return n, err
}
