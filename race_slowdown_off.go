//go:build !race

// race_slowdown_off.go: every build but one with the race detector; see
// race_slowdown_on.go.
package main

// raceSlowdown is 1: no race detector slows SQLite down.
const raceSlowdown = 1
