"""FPGA overlay: Amaranth designs of the pre-trade risk filter and the Greeks core,
their Verilog export, PYNQ drivers, the bit-exact model and the simulated device.
(Built by the FPGA overlay issue.)"""
