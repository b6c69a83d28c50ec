// This file is empty: its presence lets pin.go declare the runtime functions it links to without bodies.
