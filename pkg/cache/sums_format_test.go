package cache

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"

	"github.com/kiln-build/kiln/pkg/store"
)

// TestSumsFormat: format 2 gives back every entry (extreme stats, odd
// paths); a flipped byte anywhere makes the whole table unread; a table
// kiln wrote in format 1 (JSON) is still read, and the next Save writes
// format 2.
func TestSumsFormat(t *testing.T) {
	t.Parallel()
	m := map[string]fileSum{}
	for i := 0; i < 300; i++ {
		p := "/ctx/dir " + strconv.Itoa(i) + "/fïle\x00\n"
		m[p] = fileSum{FileStat: FileStat{Size: int64(i) << 40, MTime: -int64(i), CTime: 1<<62 + int64(i), Ino: ^uint64(0) - uint64(i), Dev: uint64(i), Mode: 0o100644}, Digest: strconv.Itoa(i * 7)}
	}
	m[""] = fileSum{}
	raw := encodeSums(m)
	got, ok := decodeSums(raw)
	if !ok || !reflect.DeepEqual(got, m) {
		t.Fatalf("decoded %d entries (ok %v), want %d equal ones", len(got), ok, len(m))
	}
	for _, i := range []int{0, len(sumsMagic), len(raw) / 2, len(raw) - 1} {
		bad := append([]byte(nil), raw...)
		bad[i] ^= 1
		if _, ok := decodeSums(bad); ok {
			t.Errorf("a table with byte %d flipped was read", i)
		}
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stat := FileStat{Size: 3, MTime: 1, CTime: 2, Ino: 4, Dev: 5, Mode: 0o100644}
	old, _ := json.Marshal(sumsFile{Version: 1, Sums: map[string]fileSum{"/c/f": {FileStat: stat, Digest: "d1"}}})
	table := filepath.Join(st.Root(), "context-sums.json")
	if err := os.WriteFile(table, old, 0o600); err != nil {
		t.Fatal(err)
	}
	s := OpenFileSums(st)
	if d, ok := s.Lookup("/c/f", stat); !ok || d != "d1" {
		t.Fatalf("format 1 table: %q %v", d, ok)
	}
	s.dirty = true
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if now, _ := os.ReadFile(table); string(now[:len(sumsMagic)]) != sumsMagic {
		t.Errorf("Save wrote %q, not format 2", now[:min(len(now), 20)])
	}
	if d, ok := OpenFileSums(st).Lookup("/c/f", stat); !ok || d != "d1" {
		t.Errorf("after Save: %q %v", d, ok)
	}
}

// BenchmarkSumsDecode: a java-layers table (700 files), format 2 against
// format 1.
func BenchmarkSumsDecode(b *testing.B) {
	m := map[string]fileSum{}
	for i := 0; i < 700; i++ {
		m["/work/ctx/build/libs/dependencies/BOOT-INF/lib/library-"+strconv.Itoa(i)+".jar"] = fileSum{FileStat: FileStat{Size: 123456, MTime: 1796331799002713058, CTime: 1796331799002713058, Ino: 5341247, Dev: 65024, Mode: 33188}, Digest: "59854984853104df5c353e2f681a15fc7924742f9a2e468c29af248dce45ce03"}
	}
	raw2 := encodeSums(m)
	raw1, _ := json.Marshal(sumsFile{Version: 1, Sums: m})
	b.Run("format2", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, ok := decodeSums(raw2); !ok {
				b.Fatal("not decoded")
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var f sumsFile
			if err := json.Unmarshal(raw1, &f); err != nil {
				b.Fatal(err)
			}
		}
	})
}
