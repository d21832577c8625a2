package images

import (
	"testing"
)

// FuzzParseDockerManifest: any accepted manifest names only paths inside
// the archive.
func FuzzParseDockerManifest(f *testing.F) {
	f.Add([]byte(`[{"Config":"abc.json","RepoTags":["a:b"],"Layers":["l1/layer.tar","blobs/sha256/00"]}]`))
	f.Add([]byte(`[{"Config":"../x.json","Layers":["/etc/passwd"]}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"Config":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseDockerManifest(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			if !localPath(e.Config) || len(e.Layers) == 0 {
				t.Fatalf("accepted config %q with %d layers", e.Config, len(e.Layers))
			}
			for _, l := range e.Layers {
				if !localPath(l) {
					t.Fatalf("accepted layer path %q", l)
				}
			}
		}
	})
}

// FuzzParseOCIIndex feeds the same bytes to the index, manifest and
// config parsers: any accepted document has only well-formed digests, and
// picking a manifest never panics.
func FuzzParseOCIIndex(f *testing.F) {
	d := `"digest":"sha256:` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `","size":3`
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",` + d +
		`,"platform":{"os":"linux","architecture":"amd64"}}]}`))
	f.Add([]byte(`{"schemaVersion":2,"config":{` + d + `},"layers":[{` + d + `}]}`))
	f.Add([]byte(`{"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:` +
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `"]}}`))
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"digest":"sha512:00","size":-1}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if idx, err := parseOCIIndex(data, "fuzz"); err == nil {
			for _, m := range idx.Manifests {
				mustDigest(t, m.Digest)
			}
			if d, err := pickManifest(idx.Manifests, "fuzz"); err == nil {
				mustDigest(t, d.Digest)
			}
		}
		if m, err := parseOCIManifest(data, "fuzz"); err == nil {
			mustDigest(t, m.Config.Digest)
			for _, l := range m.Layers {
				mustDigest(t, l.Digest)
				if blobPath(l.Digest) != "blobs/sha256/"+l.Digest[len("sha256:"):] {
					t.Fatalf("blob path of %q", l.Digest)
				}
			}
		}
		if c, err := parseImageConfig(data, "fuzz"); err == nil {
			for _, id := range c.RootFS.DiffIDs {
				mustDigest(t, id)
			}
		}
	})
}

func mustDigest(t *testing.T, d string) {
	t.Helper()
	if !digestRE().MatchString(d) {
		t.Fatalf("accepted digest %q", d)
	}
}
