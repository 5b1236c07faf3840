package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// BenchmarkDiskMeasure is one walk of the disk quota's watcher over the
// 50,000 small files of testdata/workloads/many-files (100 directories of
// 500): what a step under --disk-limit pays per walk.
func BenchmarkDiskMeasure(b *testing.B) {
	dir := b.TempDir()
	for d := 0; d < 100; d++ {
		sub := filepath.Join(dir, "data", fmt.Sprint(d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := 0; f < 500; f++ {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprint(f)), []byte(fmt.Sprintf("%d/%d\n", d, f)), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	w, err := openDiskWatch(&diskSpec{Dir: dir, Limit: 1 << 40}, false)
	if err != nil {
		b.Fatal(err)
	}
	defer w.close()
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	var n int64
	for i := 0; i < b.N; i++ {
		n = w.measure()
	}
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := (ru1.Utime.Nano() + ru1.Stime.Nano()) - (ru0.Utime.Nano() + ru0.Stime.Nano())
	// CPU time, not wall time: the machine is shared.
	b.ReportMetric(float64(cpu)/float64(b.N)/1e6, "cpu-ms/op")
	b.ReportMetric(float64(n)/float64(1<<20), "MiB")
}
