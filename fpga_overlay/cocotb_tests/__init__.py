"""cocotb testbenches of the exported Verilog (run by tests/test_fpga_cocotb.py on Icarus Verilog)."""
