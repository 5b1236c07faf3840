// Package progress reports build and transfer progress: terminal output,
// plain CI log lines and JSON events.
package progress
