// Package progress reports build and transfer progress: terminal output,
// plain CI log lines and JSON events.
//
// Producers (pkg/registry's uploads and downloads, the CLI's pulls) send an
// Event for everything that happens to a blob; a Reporter made by New renders
// the events in one of the modes:
//
//   - "tty": one line per blob, redrawn in place, with a bar, bytes and rate;
//   - "plain": one line per finished blob event, docker's wording
//     ("0123456789ab: Pushed", "Layer already exists", "Mounted from repo");
//   - "json": one JSON object per event and line (byte progress at most once
//     a second per blob);
//   - "quiet": nothing.
//
// "auto" (or "") picks tty when the writer is a terminal and plain otherwise.
// A nil Reporter is valid everywhere a Reporter is taken and reports nothing.
package progress
