package main

import "github.com/spf13/cobra"

// addLabCommands adds the device, sim and initrd commands.
func (a *app) addLabCommands(root *cobra.Command) {}
