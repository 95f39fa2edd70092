// Package projections holds the read models of the ledger, each a named,
// versioned, pure function of the event log:
//
//   - bookings (FoldBooking): the status table, kept inline, in the
//     transaction that appends the events, so that reads and availability
//     checks see exactly the log;
//   - monitoring (MonitoringDeltas): counters kept asynchronously by a
//     subscriber of the log.
//
// The package imports only domain. Storage, the subscriber and the rebuild
// runner live in adapters/postgres.
package projections

import "slices"

// Info describes a projection: its name (as stored in projection_state),
// the version of the code in this binary, and whether it is kept inline
// (in the appending transaction) or by a subscriber.
type Info struct {
	Name    string
	Version int
	Inline  bool
}

// All lists the projections of this binary.
func All() []Info {
	return []Info{
		{Name: BookingsName, Version: BookingsVersion, Inline: true},
		{Name: MonitoringName, Version: MonitoringVersion, Inline: false},
	}
}

// Lookup returns the projection named name.
func Lookup(name string) (Info, bool) {
	all := All()
	i := slices.IndexFunc(all, func(p Info) bool { return p.Name == name })
	if i < 0 {
		return Info{}, false
	}
	return all[i], true
}
