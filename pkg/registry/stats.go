package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// Stats counts registry traffic. It is safe for concurrent use; share one
// value between operations through Options.Stats. The zero value is ready.
//
// Blob downloads are told apart by digest: the transport reads every image
// manifest it downloads and remembers its config digest, so a GET of that
// digest counts as a config and any other blob GET counts as a layer. Since
// a client can only learn a config digest from a manifest, the
// classification needs no cooperation from the caller.
type Stats struct {
	requests      atomic.Int64
	blobBytesDown atomic.Int64
	blobBytesUp   atomic.Int64
	layerBlobs    atomic.Int64
	layerBytes    atomic.Int64
	configBlobs   atomic.Int64
	manifests     atomic.Int64

	mu      sync.Mutex
	configs map[string]bool
}

// Requests is the number of HTTP requests sent, retries, pings, token
// requests and redirects included.
func (s *Stats) Requests() int64 { return s.requests.Load() }

// BlobBytesDownloaded is the number of bytes read from the bodies of blob
// GET responses (layers and configs).
func (s *Stats) BlobBytesDownloaded() int64 { return s.blobBytesDown.Load() }

// BlobBytesUploaded is the number of blob bytes sent in upload requests
// (bytes re-sent by a retry count again).
func (s *Stats) BlobBytesUploaded() int64 { return s.blobBytesUp.Load() }

// LayerBlobsDownloaded is the number of successful blob GET responses for
// digests that are not image configs; a request that resumes a broken
// download does not count again.
func (s *Stats) LayerBlobsDownloaded() int64 { return s.layerBlobs.Load() }

// LayerBytesDownloaded is the part of BlobBytesDownloaded that came from
// blobs that are not image configs.
func (s *Stats) LayerBytesDownloaded() int64 { return s.layerBytes.Load() }

// ConfigBlobsDownloaded is the number of successful GET responses for image
// config blobs.
func (s *Stats) ConfigBlobsDownloaded() int64 { return s.configBlobs.Load() }

// ManifestsDownloaded is the number of successful manifest GET responses.
func (s *Stats) ManifestsDownloaded() int64 { return s.manifests.Load() }

// String summarises the counters for logs.
func (s *Stats) String() string {
	return fmt.Sprintf("%d requests, %d manifests, %d config blobs, %d layer blobs (%d bytes) down, %d blob bytes down, %d blob bytes up",
		s.Requests(), s.ManifestsDownloaded(), s.ConfigBlobsDownloaded(), s.LayerBlobsDownloaded(), s.LayerBytesDownloaded(),
		s.BlobBytesDownloaded(), s.BlobBytesUploaded())
}

// NoteConfig records digest (e.g. "sha256:...") as an image config, for
// configs learnt from somewhere other than a manifest fetched with these
// Stats.
func (s *Stats) NoteConfig(digest string) {
	if digest == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.configs == nil {
		s.configs = map[string]bool{}
	}
	s.configs[digest] = true
}

func (s *Stats) isConfig(digest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.configs[digest]
}

// requestKind classifies a registry API request by its path.
type requestKind int

const (
	kindOther requestKind = iota
	kindBlob
	kindUpload
	kindManifest
)

// classifyPath looks at /v2/<name>/blobs/<digest>,
// /v2/<name>/blobs/uploads/... and /v2/<name>/manifests/<ref>.
func classifyPath(path string) (requestKind, string) {
	if !strings.HasPrefix(path, "/v2/") {
		return kindOther, ""
	}
	if i := strings.LastIndex(path, "/blobs/uploads"); i >= 0 {
		return kindUpload, ""
	}
	if i := strings.LastIndex(path, "/blobs/"); i >= 0 {
		d := path[i+len("/blobs/"):]
		if strings.Contains(d, ":") && !strings.Contains(d, "/") {
			return kindBlob, d
		}
	}
	if i := strings.LastIndex(path, "/manifests/"); i >= 0 {
		return kindManifest, path[i+len("/manifests/"):]
	}
	return kindOther, ""
}

// originRequest follows a redirect chain back to the first request.
func originRequest(req *http.Request) *http.Request {
	for i := 0; i < 20 && req.Response != nil && req.Response.Request != nil; i++ {
		req = req.Response.Request
	}
	return req
}

// statsTransport counts the traffic that goes through it. It sits below the
// retry layer, so that every request actually sent is counted.
type statsTransport struct {
	inner http.RoundTripper
	s     *Stats
}

func (t *statsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	s := t.s
	s.requests.Add(1)
	origin := originRequest(req)
	kind, ident := classifyPath(origin.URL.Path)

	if kind == kindUpload && req.Body != nil && req.Body != http.NoBody {
		r2 := req.Clone(req.Context())
		r2.Body = &countingBody{rc: req.Body, count: func(n int) { s.blobBytesUp.Add(int64(n)) }}
		if req.GetBody != nil {
			r2.GetBody = func() (io.ReadCloser, error) {
				rc, err := req.GetBody()
				if err != nil {
					return nil, err
				}
				return &countingBody{rc: rc, count: func(n int) { s.blobBytesUp.Add(int64(n)) }}, nil
			}
		}
		req = r2
	}

	resp, err := t.inner.RoundTrip(req)
	if err != nil || origin.Method != http.MethodGet || req.Method != http.MethodGet {
		return resp, err
	}
	switch kind {
	case kindBlob:
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
			return resp, nil
		}
		// A resumed download (see resumingBody) was counted already.
		first := req.Context().Value(resumeKey{}) == nil
		if s.isConfig(ident) {
			if first {
				s.configBlobs.Add(1)
			}
			resp.Body = &countingBody{rc: resp.Body, count: func(n int) { s.blobBytesDown.Add(int64(n)) }}
		} else {
			if first {
				s.layerBlobs.Add(1)
			}
			resp.Body = &countingBody{rc: resp.Body, count: func(n int) {
				s.blobBytesDown.Add(int64(n))
				s.layerBytes.Add(int64(n))
			}}
		}
	case kindManifest:
		if resp.StatusCode == http.StatusOK {
			s.manifests.Add(1)
			resp.Body = &manifestSniffer{rc: resp.Body, s: s}
		}
	}
	return resp, nil
}

// countingBody reports the bytes read through it.
type countingBody struct {
	rc    io.ReadCloser
	count func(int)
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	if n > 0 {
		c.count(n)
	}
	return n, err
}

func (c *countingBody) Close() error { return c.rc.Close() }

// maxSniffedManifest bounds how much of a manifest is kept for parsing.
const maxSniffedManifest = 4 << 20

// manifestSniffer keeps a copy of a manifest body and records its config
// digest once the body has been read.
type manifestSniffer struct {
	rc   io.ReadCloser
	s    *Stats
	buf  bytes.Buffer
	over bool
	once sync.Once
}

func (m *manifestSniffer) Read(p []byte) (int, error) {
	n, err := m.rc.Read(p)
	if n > 0 && !m.over {
		if m.buf.Len()+n > maxSniffedManifest {
			m.over = true
			m.buf = bytes.Buffer{}
		} else {
			m.buf.Write(p[:n])
		}
	}
	if err == io.EOF {
		m.record()
	}
	return n, err
}

func (m *manifestSniffer) Close() error {
	m.record()
	return m.rc.Close()
}

func (m *manifestSniffer) record() {
	m.once.Do(func() {
		if m.over || m.buf.Len() == 0 {
			return
		}
		var mf struct {
			Config struct {
				Digest string `json:"digest"`
			} `json:"config"`
		}
		if json.Unmarshal(m.buf.Bytes(), &mf) == nil && mf.Config.Digest != "" {
			m.s.NoteConfig(mf.Config.Digest)
		}
		m.buf = bytes.Buffer{}
	})
}
