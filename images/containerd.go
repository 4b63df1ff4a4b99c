package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	cdtypes "github.com/containerd/containerd/api/types"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// containerd's image store is reached through its own gRPC API (content, images and
// leases services), the API module alone: the client library would bring containerd's
// snapshotters, platforms and their dependencies into the launcher for three services.

// Defaults of containerd's socket and namespace (Kubernetes nodes use k8s.io).
const (
	DefaultContainerdAddress   = "/run/containerd/containerd.sock"
	DefaultContainerdNamespace = "default"
)

// containerdStore is a connection to one namespace of a containerd daemon.
type containerdStore struct {
	lim     Limits
	conn    *grpc.ClientConn
	address string
	ns      string
	content contentapi.ContentClient
	images  imagesapi.ImagesClient
	leases  leasesapi.LeasesClient
}

func (o *IO) containerd() (*containerdStore, error) {
	if o.store != nil {
		return o.store, nil
	}
	address, ns := o.ContainerdAddress, o.ContainerdNamespace
	if address == "" {
		address = DefaultContainerdAddress
	}
	if ns == "" {
		ns = DefaultContainerdNamespace
	}
	conn, err := grpc.NewClient("unix://"+address, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: %w", address, err)
	}
	o.store = &containerdStore{lim: o.Limits.orDefaults(), conn: conn, address: address, ns: ns,
		content: contentapi.NewContentClient(conn), images: imagesapi.NewImagesClient(conn), leases: leasesapi.NewLeasesClient(conn)}
	o.cleanup = append(o.cleanup, func() { conn.Close() })
	return o.store, nil
}

// ctx carries the namespace, as containerd's API wants it: in the request metadata.
func (s *containerdStore) ctx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "containerd-namespace", s.ns)
}

func (s *containerdStore) explain(err error) error {
	if err == nil {
		return nil
	}
	if status.Code(err) == codes.Unavailable {
		return &statusError{msg: fmt.Sprintf("containerd at %s: %s (is it running? --containerd-address)", s.address, status.Convert(err).Message()), err: err}
	}
	if st, ok := status.FromError(err); ok {
		return &statusError{msg: st.Message(), err: err}
	}
	return err
}

// statusError says a gRPC error in containerd's words, without gRPC's framing
// ("rpc error: code = … desc = …"), and keeps it as its cause.
type statusError struct {
	msg string
	err error
}

func (e *statusError) Error() string { return e.msg }
func (e *statusError) Unwrap() error { return e.err }

// lookup finds an image by the name given, or by its fully qualified form (containerd
// stores docker.io/library/app:1 for app:1).
func (s *containerdStore) lookup(ctx context.Context, ref string) (*imagesapi.Image, error) {
	names := []string{ref}
	if r, err := name.ParseReference(ref); err == nil && r.Name() != ref {
		names = append(names, r.Name())
	}
	for _, n := range names {
		resp, err := s.images.Get(s.ctx(ctx), &imagesapi.GetImageRequest{Name: n})
		if status.Code(err) == codes.NotFound {
			continue
		}
		if err != nil {
			return nil, s.explain(err)
		}
		return resp.Image, nil
	}
	return nil, fmt.Errorf("no image %s in containerd's namespace %s", ref, s.ns)
}

// readBlob reads a manifest or a config whole: at most limit bytes of it.
func (s *containerdStore) readBlob(ctx context.Context, digest string, limit int64, what string) ([]byte, error) {
	rc, err := s.blobReader(ctx, digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s %s: %w", what, digest, err)
	}
	if int64(len(b)) > limit {
		return nil, overLimit("%s %s is over the limit of %s; %s", what, digest, FormatSize(limit), malformedHint)
	}
	return b, nil
}

// blobReader streams a blob from the content store.
func (s *containerdStore) blobReader(ctx context.Context, digest string) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(s.ctx(ctx))
	stream, err := s.content.Read(ctx, &contentapi.ReadContentRequest{Digest: digest})
	if err != nil {
		cancel()
		return nil, s.explain(err)
	}
	return &blobStream{stream: stream, cancel: cancel, s: s}, nil
}

type blobStream struct {
	stream contentapi.Content_ReadClient
	cancel context.CancelFunc
	s      *containerdStore
	buf    []byte
}

func (b *blobStream) Read(p []byte) (int, error) {
	for len(b.buf) == 0 {
		resp, err := b.stream.Recv()
		if errors.Is(err, io.EOF) {
			return 0, io.EOF
		}
		if err != nil {
			return 0, b.s.explain(err)
		}
		b.buf = resp.Data
	}
	n := copy(p, b.buf)
	b.buf = b.buf[n:]
	return n, nil
}

func (b *blobStream) Close() error { b.cancel(); return nil }

// readContainerd opens an image of containerd's store: an index or an image, its
// blobs read from the content store when used.
func (o *IO) readContainerd(ctx context.Context, ref string) (Artifact, error) {
	s, err := o.containerd()
	if err != nil {
		return Artifact{}, err
	}
	img, err := s.lookup(ctx, ref)
	if err != nil {
		return Artifact{}, err
	}
	t := img.Target
	if t == nil {
		return Artifact{}, fmt.Errorf("containerd's image %s has no target", img.Name)
	}
	mt := types.MediaType(t.MediaType)
	switch {
	case mt.IsIndex():
		idx, err := s.index(ctx, t.Digest, mt)
		return Artifact{Index: idx, Name: img.Name}, err
	case mt.IsImage():
		im, err := s.image(ctx, t.Digest, mt)
		return Artifact{Image: im, Name: img.Name}, err
	}
	return Artifact{}, fmt.Errorf("containerd's image %s: media type %s is neither an image nor an index", img.Name, mt)
}

func (s *containerdStore) image(ctx context.Context, digest string, mt types.MediaType) (v1.Image, error) {
	raw, err := s.readBlob(ctx, digest, s.lim.ManifestSize, "manifest")
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}
	config, err := s.readBlob(ctx, m.Config.Digest.String(), s.lim.ConfigSize, "image config")
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&storeImage{s: s, ctx: ctx, raw: raw, manifest: m, config: config, mt: mt})
}

// storeImage is an image of containerd's content store.
type storeImage struct {
	s        *containerdStore
	ctx      context.Context
	raw      []byte
	manifest *v1.Manifest
	config   []byte
	mt       types.MediaType
}

func (i *storeImage) RawConfigFile() ([]byte, error)      { return i.config, nil }
func (i *storeImage) MediaType() (types.MediaType, error) { return i.mt, nil }
func (i *storeImage) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *storeImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range i.manifest.Layers {
		if d.Digest == h {
			return &storeLayer{s: i.s, ctx: i.ctx, desc: d}, nil
		}
	}
	return nil, fmt.Errorf("manifest has no layer %s", h)
}

type storeLayer struct {
	s    *containerdStore
	ctx  context.Context
	desc v1.Descriptor
}

func (l *storeLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *storeLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *storeLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *storeLayer) Compressed() (io.ReadCloser, error) {
	return l.s.blobReader(l.ctx, l.desc.Digest.String())
}

// storeIndex is an index of containerd's content store.
type storeIndex struct {
	s   *containerdStore
	ctx context.Context
	raw []byte
	im  *v1.IndexManifest
	mt  types.MediaType
}

func (s *containerdStore) index(ctx context.Context, digest string, mt types.MediaType) (v1.ImageIndex, error) {
	raw, err := s.readBlob(ctx, digest, s.lim.ManifestSize, "index")
	if err != nil {
		return nil, err
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", digest, err)
	}
	return &storeIndex{s: s, ctx: ctx, raw: raw, im: im, mt: mt}, nil
}

func (x *storeIndex) MediaType() (types.MediaType, error)       { return x.mt, nil }
func (x *storeIndex) RawManifest() ([]byte, error)              { return x.raw, nil }
func (x *storeIndex) IndexManifest() (*v1.IndexManifest, error) { return x.im.DeepCopy(), nil }
func (x *storeIndex) Size() (int64, error)                      { return int64(len(x.raw)), nil }
func (x *storeIndex) Digest() (v1.Hash, error) {
	h, _, err := v1.SHA256(bytes.NewReader(x.raw))
	return h, err
}

func (x *storeIndex) descriptor(h v1.Hash) (v1.Descriptor, error) {
	for _, d := range x.im.Manifests {
		if d.Digest == h {
			return d, nil
		}
	}
	return v1.Descriptor{}, fmt.Errorf("index has no manifest %s", h)
}

func (x *storeIndex) Image(h v1.Hash) (v1.Image, error) {
	d, err := x.descriptor(h)
	if err != nil {
		return nil, err
	}
	return x.s.image(x.ctx, h.String(), d.MediaType)
}

func (x *storeIndex) ImageIndex(h v1.Hash) (v1.ImageIndex, error) {
	d, err := x.descriptor(h)
	if err != nil {
		return nil, err
	}
	return x.s.index(x.ctx, h.String(), d.MediaType)
}

// writeContainerd stores a in the content store and names it ref. A lease holds the
// new blobs until the name refers to them, so that containerd's garbage collector does
// not take them in between; the manifests carry the labels by which it follows an
// image's references (containerd.io/gc.ref.content.*), as containerd's own pulls do.
// An image already named ref is repointed: the wrapped image in place of the original.
func (o *IO) writeContainerd(ctx context.Context, ref string, a Artifact) error {
	s, err := o.containerd()
	if err != nil {
		return err
	}
	lease, err := s.leases.Create(s.ctx(ctx), &leasesapi.CreateRequest{
		ID:     fmt.Sprintf("otel-go-launcher-wrap-%d", time.Now().UnixNano()),
		Labels: map[string]string{"containerd.io/gc.expire": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)},
	})
	if err != nil {
		return s.explain(err)
	}
	defer s.leases.Delete(s.ctx(context.Background()), &leasesapi.DeleteRequest{ID: lease.Lease.ID})
	ctx = metadata.AppendToOutgoingContext(ctx, "containerd-lease", lease.Lease.ID)

	var target v1.Descriptor
	if a.Index != nil {
		target, err = s.putIndex(ctx, a.Index, map[v1.Hash]bool{})
	} else {
		target, err = s.putImage(ctx, a.Image)
	}
	if err != nil {
		return err
	}
	img := &imagesapi.Image{Name: ref, Target: &cdtypes.Descriptor{MediaType: string(target.MediaType), Digest: target.Digest.String(), Size: target.Size}}
	if existing, err := s.images.Get(s.ctx(ctx), &imagesapi.GetImageRequest{Name: ref}); err == nil {
		img.Labels = existing.Image.Labels
		_, err = s.images.Update(s.ctx(ctx), &imagesapi.UpdateImageRequest{Image: img})
		return s.explain(err)
	}
	_, err = s.images.Create(s.ctx(ctx), &imagesapi.CreateImageRequest{Image: img})
	if err != nil {
		return s.explain(err)
	}
	return nil
}

func (s *containerdStore) putImage(ctx context.Context, img v1.Image) (v1.Descriptor, error) {
	layers, err := img.Layers()
	if err != nil {
		return v1.Descriptor{}, err
	}
	m, err := img.Manifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	labels := map[string]string{"containerd.io/gc.ref.content.config": m.Config.Digest.String()}
	for i, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return v1.Descriptor{}, err
		}
		labels["containerd.io/gc.ref.content.l."+strconv.Itoa(i)] = d.String()
		size, err := l.Size()
		if err != nil {
			return v1.Descriptor{}, err
		}
		if err := s.put(ctx, d, size, l.Compressed, nil); err != nil {
			return v1.Descriptor{}, err
		}
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, err
	}
	if err := s.putBytes(ctx, config, nil); err != nil {
		return v1.Descriptor{}, err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return s.putManifest(ctx, raw, mt, labels)
}

// putIndex stores idx and what it refers to, each distinct manifest once (seen).
func (s *containerdStore) putIndex(ctx context.Context, idx v1.ImageIndex, seen map[v1.Hash]bool) (v1.Descriptor, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	labels := map[string]string{}
	for i, d := range im.Manifests {
		labels["containerd.io/gc.ref.content.m."+strconv.Itoa(i)] = d.Digest.String()
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		var err error
		switch {
		case d.MediaType.IsIndex():
			var child v1.ImageIndex
			if child, err = idx.ImageIndex(d.Digest); err == nil {
				_, err = s.putIndex(ctx, child, seen)
			}
		case d.MediaType.IsImage():
			var child v1.Image
			if child, err = idx.Image(d.Digest); err == nil {
				_, err = s.putImage(ctx, child)
			}
		}
		if err != nil {
			return v1.Descriptor{}, err
		}
	}
	raw, err := idx.RawManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	mt, err := idx.MediaType()
	if err != nil {
		return v1.Descriptor{}, err
	}
	return s.putManifest(ctx, raw, mt, labels)
}

func (s *containerdStore) putManifest(ctx context.Context, raw []byte, mt types.MediaType, labels map[string]string) (v1.Descriptor, error) {
	d, size, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, err
	}
	if err := s.putBytes(ctx, raw, labels); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Digest: d, Size: size}, nil
}

func (s *containerdStore) putBytes(ctx context.Context, b []byte, labels map[string]string) error {
	d, size, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return s.put(ctx, d, size, func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, labels)
}

// put writes one blob unless the store has it: a stat, writes of 1 MiB, a commit that
// the store checks against the size and digest. Labels go on with the commit, or onto
// the blob when it is there already.
func (s *containerdStore) put(ctx context.Context, digest v1.Hash, size int64, open func() (io.ReadCloser, error), labels map[string]string) error {
	if info, err := s.content.Info(s.ctx(ctx), &contentapi.InfoRequest{Digest: digest.String()}); err == nil {
		if len(labels) == 0 {
			return nil
		}
		merged := map[string]string{}
		for k, v := range info.Info.Labels {
			merged[k] = v
		}
		for k, v := range labels {
			merged[k] = v
		}
		info.Info.Labels = merged
		_, err := s.content.Update(s.ctx(ctx), &contentapi.UpdateRequest{Info: info.Info})
		return s.explain(err)
	}
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	wctx, cancel := context.WithCancel(s.ctx(ctx))
	defer cancel()
	stream, err := s.content.Write(wctx)
	if err != nil {
		return s.explain(err)
	}
	ref := fmt.Sprintf("otel-go-launcher-%s-%d", digest.Hex, time.Now().UnixNano())
	send := func(req *contentapi.WriteContentRequest) error {
		req.Ref = ref
		if err := stream.Send(req); err != nil {
			return err
		}
		_, err := stream.Recv()
		return err
	}
	if err := send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_STAT}); err != nil {
		return s.explain(err)
	}
	buf := make([]byte, 1<<20)
	var offset int64
	for {
		n, rerr := io.ReadFull(rc, buf)
		if n > 0 {
			if err := send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_WRITE, Offset: offset, Data: buf[:n]}); err != nil {
				return s.explain(err)
			}
			offset += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	// The offset goes with the commit too: an offset of 0 would mean "start again".
	err = send(&contentapi.WriteContentRequest{Action: contentapi.WriteAction_COMMIT, Offset: offset, Total: size, Expected: digest.String(), Labels: labels})
	if status.Code(err) == codes.AlreadyExists {
		return nil
	}
	if err != nil {
		return fmt.Errorf("writing blob %s to containerd: %w", digest, s.explain(err))
	}
	stream.CloseSend()
	return nil
}
