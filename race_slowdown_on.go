//go:build race

// race_slowdown_on.go: built only with the race detector (go test -race).
package main

// raceSlowdown is how many times slower the race detector makes SQLite,
// which is C translated into Go and so instrumented in every memory
// access: about ten. The bounds measured in time on SQLite's work (the
// search time limit) grow by it, so that a test under -race meets the
// same bounds, relative to the work, as a release build.
const raceSlowdown = 10
