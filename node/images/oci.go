package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/ferryhq/ferry/node/archive"
)

// maxIndexDepth bounds how many indexes may nest above a manifest.
const maxIndexDepth = 4

type ociDescriptor struct {
	MediaType string       `json:"mediaType"`
	Digest    string       `json:"digest"`
	Size      int64        `json:"size"`
	Platform  *ociPlatform `json:"platform,omitempty"`
}

type ociPlatform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

type ociIndex struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Manifests     []ociDescriptor `json:"manifests"`
}

type ociManifest struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Config        ociDescriptor   `json:"config"`
	Layers        []ociDescriptor `json:"layers"`
}

func checkDescriptor(d ociDescriptor, what string) error {
	if !digestRE().MatchString(d.Digest) {
		return fmt.Errorf("%w: %s: digest %q is not a sha256 digest (the only algorithm supported)", ErrBadArchive, what, d.Digest)
	}
	if d.Size < 0 {
		return fmt.Errorf("%w: %s: negative size %d", ErrBadArchive, what, d.Size)
	}
	return nil
}

// parseOCIIndex parses an image index (index.json or a nested index blob).
func parseOCIIndex(data []byte, what string) (*ociIndex, error) {
	var idx ociIndex
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%w: %s is not an OCI image index: %w", ErrBadArchive, what, err)
	}
	if idx.SchemaVersion != 2 {
		return nil, fmt.Errorf("%w: %s has schemaVersion %d, want 2", ErrBadArchive, what, idx.SchemaVersion)
	}
	if len(idx.Manifests) == 0 {
		return nil, fmt.Errorf("%w: %s lists no manifests", ErrBadArchive, what)
	}
	for i, d := range idx.Manifests {
		if err := checkDescriptor(d, fmt.Sprintf("%s manifest %d", what, i)); err != nil {
			return nil, err
		}
	}
	return &idx, nil
}

// parseOCIManifest parses an image manifest.
func parseOCIManifest(data []byte, what string) (*ociManifest, error) {
	var m ociManifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %w", ErrBadArchive, what, err)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("%w: manifest %s has schemaVersion %d, want 2", ErrBadArchive, what, m.SchemaVersion)
	}
	if err := checkDescriptor(m.Config, "config of manifest "+what); err != nil {
		return nil, err
	}
	if len(m.Layers) == 0 {
		return nil, fmt.Errorf("%w: manifest %s lists no layers", ErrBadArchive, what)
	}
	for i, d := range m.Layers {
		if err := checkDescriptor(d, fmt.Sprintf("manifest %s layer %d", what, i)); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

func isIndexType(mediaType string) bool {
	return mediaType == "application/vnd.oci.image.index.v1+json" ||
		mediaType == "application/vnd.docker.distribution.manifest.list.v2+json"
}

// pickManifest chooses the manifest for linux on this architecture, else
// the first without a platform; an index whose every entry is for another
// platform is refused, naming the platforms it has.
func pickManifest(descs []ociDescriptor, what string) (ociDescriptor, error) {
	for _, d := range descs {
		if d.Platform != nil && matchesHost(d.Platform.OS, d.Platform.Architecture) {
			return d, nil
		}
	}
	var have []string
	for _, d := range descs {
		if d.Platform == nil {
			return d, nil
		}
		have = append(have, d.Platform.OS+"/"+d.Platform.Architecture)
	}
	return ociDescriptor{}, fmt.Errorf("%w: %s has no image for %s (it has %s); import an image built for this platform",
		ErrBadArchive, what, hostPlatform(), strings.Join(have, ", "))
}

// importOCI imports the OCI image layout rooted at root.
func (j *importJob) importOCI(ctx context.Context, root, source string) (*Image, error) {
	m, cfgDigest, cfg, err := readOCIImage(root)
	if err != nil {
		return nil, err
	}
	img := &Image{ID: cfgDigest, Config: cfg.imageConfig(), Source: source}
	for i, d := range m.Layers {
		id, err := j.ociLayer(ctx, root, d, cfg.RootFS.DiffIDs[i])
		if err != nil {
			return nil, err
		}
		img.Layers = append(img.Layers, id)
		img.Size += j.layerSize(id)
	}
	return img, nil
}

// readOCIImage follows oci-layout, index.json and any nested index to the
// manifest and config, verifying every blob read.
func readOCIImage(root string) (*ociManifest, string, *imageConfigJSON, error) {
	if err := checkLayoutFile(root); err != nil {
		return nil, "", nil, err
	}
	data, err := readJSONFile(root, "index.json")
	if err != nil {
		return nil, "", nil, err
	}
	desc, err := resolveManifest(root, data)
	if err != nil {
		return nil, "", nil, err
	}
	if data, err = readBlob(root, desc); err != nil {
		return nil, "", nil, err
	}
	m, err := parseOCIManifest(data, desc.Digest)
	if err != nil {
		return nil, "", nil, err
	}
	if data, err = readBlob(root, m.Config); err != nil {
		return nil, "", nil, err
	}
	cfg, err := parseImageConfig(data, m.Config.Digest)
	if err != nil {
		return nil, "", nil, err
	}
	if err := checkLayerCount(len(m.Layers), cfg, "manifest "+desc.Digest); err != nil {
		return nil, "", nil, err
	}
	return m, m.Config.Digest, cfg, nil
}

func checkLayoutFile(root string) error {
	data, err := readJSONFile(root, "oci-layout")
	if err != nil {
		return err
	}
	var layout struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(data, &layout); err != nil || layout.Version == "" {
		return fmt.Errorf("%w: oci-layout has no imageLayoutVersion", ErrBadArchive)
	}
	return nil
}

// resolveManifest picks a manifest from index.json, descending through
// nested indexes.
func resolveManifest(root string, indexJSON []byte) (ociDescriptor, error) {
	idx, err := parseOCIIndex(indexJSON, "index.json")
	if err != nil {
		return ociDescriptor{}, err
	}
	desc, err := pickManifest(idx.Manifests, "index.json")
	for depth := 0; err == nil && isIndexType(desc.MediaType); depth++ {
		if depth == maxIndexDepth {
			return ociDescriptor{}, fmt.Errorf("%w: indexes nest more than %d deep", ErrBadArchive, maxIndexDepth)
		}
		var data []byte
		if data, err = readBlob(root, desc); err != nil {
			break
		}
		if idx, err = parseOCIIndex(data, "index "+desc.Digest); err != nil {
			break
		}
		desc, err = pickManifest(idx.Manifests, "index "+desc.Digest)
	}
	return desc, err
}

func blobPath(digest string) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
}

// readBlob reads a JSON blob and checks its size and digest.
func readBlob(root string, d ociDescriptor) ([]byte, error) {
	data, err := readJSONFile(root, blobPath(d.Digest))
	if err != nil {
		return nil, err
	}
	if d.Size > 0 && int64(len(data)) != d.Size {
		return nil, fmt.Errorf("%w: blob %s is %d bytes, its descriptor says %d", ErrBadArchive, d.Digest, len(data), d.Size)
	}
	return data, checkDigest(d.Digest, digestOf(data))
}

func checkDigest(want, got string) error {
	if want != got {
		return fmt.Errorf("%w: blob %s: content hashes to %s; the archive is damaged, save or fetch it again",
			ErrBadArchive, want, got)
	}
	return nil
}

// ociLayer stores the layer blob d, whose uncompressed content must have
// diffID want, unless that layer is already stored. The blob's digest is
// checked while it is read; a mismatch discards the extracted layer.
func (j *importJob) ociLayer(ctx context.Context, root string, d ociDescriptor, want string) (string, error) {
	if j.has(want) {
		j.s.log.Debug("layer already stored; not extracting it again", "layer", want, "blob", d.Digest)
		return want, nil
	}
	f, err := openInRoot(root, blobPath(d.Digest))
	if err != nil {
		return "", err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && d.Size > 0 && fi.Size() != d.Size {
		return "", fmt.Errorf("%w: blob %s is %d bytes, its descriptor says %d", ErrBadArchive, d.Digest, fi.Size(), d.Size)
	}
	h := sha256.New()
	raw := io.TeeReader(j.p.reader(f), h)
	r, done, err := decompress(raw, "blob "+d.Digest)
	if err != nil {
		return "", err
	}
	defer done()
	verify := func() error {
		if _, err := io.Copy(io.Discard, raw); err != nil {
			return fmt.Errorf("read blob %s: %w", d.Digest, err)
		}
		return checkDigest(d.Digest, "sha256:"+hex.EncodeToString(h.Sum(nil)))
	}
	return j.extractLayer(ctx, r, archive.WhiteoutsOverlay, want, "layer blob "+d.Digest, verify)
}
