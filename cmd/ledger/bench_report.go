package main

import "github.com/spf13/cobra"

func newBenchReportCmd() *cobra.Command {
	return &cobra.Command{Use: "report", Hidden: true}
}
