package archive

import (
	"archive/tar"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Regular files are created, written and given their metadata on several
// goroutines: creating a file (the inode allocation) is most of an
// extraction's cost, and it is kernel time that spreads over CPUs. The
// goroutine reading the tar still does everything else in the layer's
// order (directories, links, devices, whiteouts, every removal) and hands
// over only what cannot interfere with it: a new name, never seen before
// in this layer, in a directory this extraction made (so nothing can be
// there yet, and the directory is writable). Contents are copied into
// batches of at most batchSize bytes, per directory, handed to workers with
// their own descriptor of the directory; a file larger than a batch is
// written in order as before.
//
// Before anything that could meet a handed-over file (the same name again,
// a hardlink to it, a directory made or looked up where it is, a removal
// of a tree, whiteouts, the final directory metadata), the reader waits
// for the files handed over so far (drain). The first error of a worker
// stops the extraction.

const (
	batchSize  = 1 << 20 // bytes of content per batch
	batchFiles = 256     // files per batch
	batchBufs  = 8       // batches filled or in flight at once (memory: batchBufs*batchSize)
)

// handedOver counts the files handed to writers (for tests).
var handedOver atomic.Int64

// fileJob is one regular file for a worker.
type fileJob struct {
	hdr   *tar.Header
	path  string
	base  string
	data  []byte // in the batch's buffer
	perm  uint32 // the mode it is created with
	mode  uint32 // its permission bits
	exact bool   // created with mode exactly: no fchmod
	chown bool   // needs fchown
}

// fileBatch is files of one directory for one worker.
type fileBatch struct {
	dir   string // clean relative path of the directory
	dirfd int    // the worker's own descriptor of it; it closes it
	buf   []byte
	jobs  []fileJob
}

// parallel is the extractor's pool of file writers.
type parallel struct {
	queue chan *fileBatch
	bufs  chan []byte // free batch buffers (nil: not allocated yet)
	wg    sync.WaitGroup

	mu       sync.Mutex
	idle     *sync.Cond
	pending  map[string]bool // paths handed over and not written yet
	inflight int             // batches queued or being written
	err      error           // the first worker error
	failed   atomic.Bool

	cur *fileBatch // being filled by the reader
}

// extractWorkers is how many file writers an extraction uses for n (see
// ExtractOptions.Workers): 0 for none.
func extractWorkers(n int) int {
	switch {
	case n < 0:
		return 0
	case n > 0:
		return n
	}
	n = runtime.GOMAXPROCS(0)
	if n > 4 {
		n = 4
	}
	return n
}

func newParallel(x *extractor, workers int) *parallel {
	p := &parallel{
		queue:   make(chan *fileBatch, batchBufs),
		bufs:    make(chan []byte, batchBufs),
		pending: map[string]bool{},
	}
	p.idle = sync.NewCond(&p.mu)
	for i := 0; i < batchBufs; i++ {
		p.bufs <- nil
	}
	p.wg.Add(workers)
	for i := 0; i < workers; i++ {
		go func() {
			defer p.wg.Done()
			for b := range p.queue {
				err := x.writeBatch(b)
				p.done(b, err)
			}
		}()
	}
	return p
}

// done retires a written batch.
func (p *parallel) done(b *fileBatch, err error) {
	p.mu.Lock()
	for i := range b.jobs {
		delete(p.pending, b.jobs[i].path)
	}
	p.inflight--
	if err != nil && p.err == nil {
		p.err = err
		p.failed.Store(true)
	}
	p.idle.Broadcast()
	p.mu.Unlock()
	p.bufs <- b.buf[:0]
}

// flush hands the batch being filled to the workers.
func (p *parallel) flush() {
	b := p.cur
	if b == nil {
		return
	}
	p.cur = nil
	p.mu.Lock()
	p.inflight++
	p.mu.Unlock()
	p.queue <- b
}

// drain waits until every file handed over is written, and returns the
// first error of a worker.
func (p *parallel) drain() error {
	p.flush()
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.inflight > 0 {
		p.idle.Wait()
	}
	return p.err
}

// firstErr is the first error of a worker, if any.
func (p *parallel) firstErr() error {
	if !p.failed.Load() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// stop ends the workers; what was handed over and not drained is
// abandoned (the extraction failed).
func (p *parallel) stop() {
	// After an error of the reader, what is queued is abandoned.
	p.failed.Store(true)
	if b := p.cur; b != nil {
		p.cur = nil
		unix.Close(b.dirfd)
	}
	close(p.queue)
	p.wg.Wait()
}

// isPending reports whether any of paths was handed over and is not
// written yet.
func (p *parallel) isPending(paths ...string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pending) == 0 {
		return false
	}
	for _, q := range paths {
		if p.pending[q] {
			return true
		}
	}
	return false
}

// drain waits for the file writers (no-op without them).
func (x *extractor) drain() error {
	if x.par == nil {
		return nil
	}
	return x.par.drain()
}

// waitFor drains the file writers if p is a file handed over to them.
func (x *extractor) waitFor(p string) error {
	if x.par != nil && x.par.isPending(p) {
		return x.par.drain()
	}
	return nil
}

// waitForAncestors drains the file writers if p or one of its parents is
// a file handed over to them (a directory is about to be looked up or
// made there).
func (x *extractor) waitForAncestors(p string) error {
	if x.par == nil {
		return nil
	}
	var paths []string
	for q := p; q != ""; q = parentPath(q) {
		paths = append(paths, q)
	}
	if x.par.isPending(paths...) {
		return x.par.drain()
	}
	return nil
}

// parallelOK reports whether the regular file entry e (whose path this
// layer had not seen before it) may be handed to a worker.
func (e *entryCtx) parallelOK(seen bool) bool {
	x := e.x
	if x.par == nil || seen || !x.fresh[e.dir] || e.hdr.Size > batchSize || isSparse(e.hdr) {
		return false
	}
	if x.up != nil && x.up.whited[e.path] {
		return false
	}
	return true
}

// queueFile reads the entry's content into a batch for the workers.
func (e *entryCtx) queueFile(r io.Reader) error {
	x, p := e.x, e.x.par
	size := int(e.hdr.Size)
	if b := p.cur; b != nil && (b.dir != e.dir || len(b.buf)+size > cap(b.buf) || len(b.jobs) >= batchFiles) {
		p.flush()
	}
	if p.cur == nil {
		buf := <-p.bufs
		if buf == nil {
			buf = make([]byte, 0, batchSize)
		}
		fd, err := unix.FcntlInt(uintptr(e.pfd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			p.bufs <- buf
			return fmt.Errorf("entry %q: %w", e.hdr.Name, err)
		}
		p.cur = &fileBatch{dir: e.dir, dirfd: fd, buf: buf}
	}
	b := p.cur
	start := len(b.buf)
	b.buf = b.buf[:start+size]
	if _, err := io.ReadFull(r, b.buf[start:]); err != nil {
		b.buf = b.buf[:start]
		return fmt.Errorf("entry %q: read content: %w", e.hdr.Name, err)
	}
	mode := uint32(e.hdr.Mode & 0o7777)
	j := fileJob{hdr: e.hdr, path: e.path, base: e.base, data: b.buf[start : start+size], mode: mode, perm: 0o600}
	j.exact = x.modeByCreate(mode)
	if j.exact {
		j.perm = mode
	}
	if x.opts.Chown && !x.ownedByCreate(e.hdr) {
		// chown may clear setuid and setgid: set the mode again.
		j.chown, j.exact = true, false
	}
	b.jobs = append(b.jobs, j)
	handedOver.Add(1)
	p.mu.Lock()
	p.pending[e.path] = true
	p.mu.Unlock()
	return nil
}

// writeBatch creates and writes a batch's files (a worker).
func (x *extractor) writeBatch(b *fileBatch) error {
	defer unix.Close(b.dirfd)
	for i := range b.jobs {
		if x.par.failed.Load() {
			return nil
		}
		if err := x.writeJob(b.dirfd, &b.jobs[i]); err != nil {
			return fmt.Errorf("entry %q: %w", b.jobs[i].hdr.Name, err)
		}
	}
	return nil
}

func (x *extractor) writeJob(dfd int, j *fileJob) error {
	fd, err := unix.Openat(dfd, j.base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, j.perm)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	err = x.fillJob(fd, j)
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	return err
}

// fillJob writes a new file's content and applies its owner, mode,
// xattrs and times, through its descriptor.
func (x *extractor) fillJob(fd int, j *fileJob) error {
	if err := writeAll(fd, j.data); err != nil {
		return fmt.Errorf("write content: %w", err)
	}
	x.startWriteBack(fd, len(j.data))
	if j.chown {
		if err := unix.Fchown(fd, j.hdr.Uid, j.hdr.Gid); err != nil {
			return fmt.Errorf("chown %d:%d: %w", j.hdr.Uid, j.hdr.Gid, err)
		}
	}
	if !j.exact {
		if err := unix.Fchmod(fd, j.mode); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if hasXattrs(j.hdr) {
		e := entryCtx{x: x, hdr: j.hdr}
		e.setXattrs(func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) })
	}
	if err := futimens(fd, headerTimes(j.hdr)); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// futimens sets the times of the file fd (utimensat with a NULL path).
func futimens(fd int, ts []unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// startWriteBack starts writing a new file's n bytes to disk, without
// waiting (ExtractOptions.WriteBack). Best effort: a filesystem that does
// not support it is synced by SyncFS all the same.
func (x *extractor) startWriteBack(fd, n int) {
	if x.opts.WriteBack && n > 0 {
		_ = unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	}
}
