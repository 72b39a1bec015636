// Behavioural model of the Lattice ECP5 MULT18X18D (18×18 multiplier of the sysDSP slice), written for
// tensornic's post-synthesis simulation (sim/postsynth.py) from the primitive's documented behaviour (Lattice
// TN1267, ECP5 and ECP5-5G sysDSP Usage Guide). It serves both the engine's ECP5 multiplier path in RTL
// simulation (sim/test_engine.py) and the post-synthesis netlist, so it covers every register setting a
// synthesized netlist uses: Yosys's own DSP mapping emits combinational multipliers (all REG_*_CLK "NONE").
//
// Each of the input registers A and B (with SIGNEDA/SIGNEDB), the pipeline register and the output register is
// bypassed ("NONE") or clocked by CLK0…CLK3 with its own CE0…CE3 and RST0…RST3 (reset synchronous, or at once
// with RESETMODE "ASYNC"). SOURCEA/SOURCEB select the shift inputs SRIA/SRIB instead of A/B; SROA/SROB and
// ROA/ROB show the (registered) operands, ROC the C input. P is the 36-bit product, SIGNEDP whether it is
// signed. MULT_BYPASS, CLKn_DIV other than "ENABLED" and HIGHSPEED_CLK stop the simulation, as does any
// register setting outside the above, so the model never silently stands in for a configuration it does not
// model. Unconnected inputs read as 0 (the hardware's default for unrouted DSP inputs).
// The SoC's post-synthesis tests exercise the systolic array's setting (A, B and output registers on CLK0,
// signed) and Yosys's combinational unsigned one; the other stages are the same code with other clocks.
`default_nettype none
module MULT18X18D(
    A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17, B0, B1, B2, B3, B4, B5, B6, B7,
    B8, B9, B10, B11, B12, B13, B14, B15, B16, B17, C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13,
    C14, C15, C16, C17, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1,
    RST2, RST3, SRIA0, SRIA1, SRIA2, SRIA3, SRIA4, SRIA5, SRIA6, SRIA7, SRIA8, SRIA9, SRIA10, SRIA11, SRIA12,
    SRIA13, SRIA14, SRIA15, SRIA16, SRIA17, SRIB0, SRIB1, SRIB2, SRIB3, SRIB4, SRIB5, SRIB6, SRIB7, SRIB8, SRIB9,
    SRIB10, SRIB11, SRIB12, SRIB13, SRIB14, SRIB15, SRIB16, SRIB17, SROA0, SROA1, SROA2, SROA3, SROA4, SROA5,
    SROA6, SROA7, SROA8, SROA9, SROA10, SROA11, SROA12, SROA13, SROA14, SROA15, SROA16, SROA17, SROB0, SROB1,
    SROB2, SROB3, SROB4, SROB5, SROB6, SROB7, SROB8, SROB9, SROB10, SROB11, SROB12, SROB13, SROB14, SROB15, SROB16,
    SROB17, ROA0, ROA1, ROA2, ROA3, ROA4, ROA5, ROA6, ROA7, ROA8, ROA9, ROA10, ROA11, ROA12, ROA13, ROA14, ROA15,
    ROA16, ROA17, ROB0, ROB1, ROB2, ROB3, ROB4, ROB5, ROB6, ROB7, ROB8, ROB9, ROB10, ROB11, ROB12, ROB13, ROB14,
    ROB15, ROB16, ROB17, ROC0, ROC1, ROC2, ROC3, ROC4, ROC5, ROC6, ROC7, ROC8, ROC9, ROC10, ROC11, ROC12, ROC13,
    ROC14, ROC15, ROC16, ROC17, P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17,
    P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35, SIGNEDP);
    input wire
        A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17, B0, B1, B2, B3, B4, B5, B6,
        B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17, C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12,
        C13, C14, C15, C16, C17, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3,
        RST0, RST1, RST2, RST3, SRIA0, SRIA1, SRIA2, SRIA3, SRIA4, SRIA5, SRIA6, SRIA7, SRIA8, SRIA9, SRIA10,
        SRIA11, SRIA12, SRIA13, SRIA14, SRIA15, SRIA16, SRIA17, SRIB0, SRIB1, SRIB2, SRIB3, SRIB4, SRIB5, SRIB6,
        SRIB7, SRIB8, SRIB9, SRIB10, SRIB11, SRIB12, SRIB13, SRIB14, SRIB15, SRIB16, SRIB17;
    output wire
        SROA0, SROA1, SROA2, SROA3, SROA4, SROA5, SROA6, SROA7, SROA8, SROA9, SROA10, SROA11, SROA12, SROA13,
        SROA14, SROA15, SROA16, SROA17, SROB0, SROB1, SROB2, SROB3, SROB4, SROB5, SROB6, SROB7, SROB8, SROB9,
        SROB10, SROB11, SROB12, SROB13, SROB14, SROB15, SROB16, SROB17, ROA0, ROA1, ROA2, ROA3, ROA4, ROA5, ROA6,
        ROA7, ROA8, ROA9, ROA10, ROA11, ROA12, ROA13, ROA14, ROA15, ROA16, ROA17, ROB0, ROB1, ROB2, ROB3, ROB4,
        ROB5, ROB6, ROB7, ROB8, ROB9, ROB10, ROB11, ROB12, ROB13, ROB14, ROB15, ROB16, ROB17, ROC0, ROC1, ROC2,
        ROC3, ROC4, ROC5, ROC6, ROC7, ROC8, ROC9, ROC10, ROC11, ROC12, ROC13, ROC14, ROC15, ROC16, ROC17, P0, P1,
        P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24,
        P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35, SIGNEDP;

    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";

    function automatic integer clock_index(input [8*4-1:0] name);
        clock_index = name == "NONE" ? -1 : name == "CLK0" ? 0 : name == "CLK1" ? 1 : name == "CLK2" ? 2 :
                      name == "CLK3" ? 3 : -2;
    endfunction
    function automatic integer ce_index(input [8*3-1:0] name);
        ce_index = name == "CE0" ? 0 : name == "CE1" ? 1 : name == "CE2" ? 2 : name == "CE3" ? 3 : -2;
    endfunction
    function automatic integer rst_index(input [8*4-1:0] name);
        rst_index = name == "RST0" ? 0 : name == "RST1" ? 1 : name == "RST2" ? 2 : name == "RST3" ? 3 : -2;
    endfunction

    localparam integer A_CLK = clock_index(REG_INPUTA_CLK), A_CE = ce_index(REG_INPUTA_CE),
                       A_RST = rst_index(REG_INPUTA_RST);
    localparam integer B_CLK = clock_index(REG_INPUTB_CLK), B_CE = ce_index(REG_INPUTB_CE),
                       B_RST = rst_index(REG_INPUTB_RST);
    localparam integer C_CLK = clock_index(REG_INPUTC_CLK), C_CE = ce_index(REG_INPUTC_CE),
                       C_RST = rst_index(REG_INPUTC_RST);
    localparam integer PIPE_CLK = clock_index(REG_PIPELINE_CLK), PIPE_CE = ce_index(REG_PIPELINE_CE),
                       PIPE_RST = rst_index(REG_PIPELINE_RST);
    localparam integer OUT_CLK = clock_index(REG_OUTPUT_CLK), OUT_CE = ce_index(REG_OUTPUT_CE),
                       OUT_RST = rst_index(REG_OUTPUT_RST);

    initial begin
        if (A_CLK < -1 || B_CLK < -1 || C_CLK < -1 || PIPE_CLK < -1 || OUT_CLK < -1 ||
            A_CE < 0 || B_CE < 0 || C_CE < 0 || PIPE_CE < 0 || OUT_CE < 0 ||
            A_RST < 0 || B_RST < 0 || C_RST < 0 || PIPE_RST < 0 || OUT_RST < 0 ||
            MULT_BYPASS != "DISABLED" || HIGHSPEED_CLK != "NONE" || (RESETMODE != "SYNC" && RESETMODE != "ASYNC") ||
            CLK0_DIV != "ENABLED" || CLK1_DIV != "ENABLED" || CLK2_DIV != "ENABLED" || CLK3_DIV != "ENABLED") begin
            $display("MULT18X18D model: unsupported configuration");
            $finish;
        end
    end

    wire [3:0] clk = {CLK3, CLK2, CLK1, CLK0};
    wire [3:0] ce = {CE3, CE2, CE1, CE0};
    wire [3:0] rst = {RST3, RST2, RST1, RST0};
    wire [17:0] a_in = SOURCEA ? {SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9, SRIA8, SRIA7, SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0} : {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b_in = SOURCEB ? {SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9, SRIB8, SRIB7, SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0} : {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    wire [17:0] c_in = {C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0};

    // Register stages: each follows its input when its clock is "NONE", else updates on that clock.
    reg [18:0] a_reg = 19'd0, b_reg = 19'd0;
    reg [17:0] c_reg = 18'd0;
    reg [36:0] pipe_reg = 37'd0, out_reg = 37'd0;
    wire [18:0] a_stage, b_stage;
    wire [17:0] c_stage;
    wire [36:0] pipe_stage, out_stage;

    generate
        if (A_CLK < 0) begin : a_bypass
            assign a_stage = {SIGNEDA, a_in};
        end else begin : a_registered
            wire arst = RESETMODE == "ASYNC" && rst[A_RST];
            always @(posedge clk[A_CLK] or posedge arst)
                if (rst[A_RST]) a_reg <= 19'd0;
                else if (ce[A_CE]) a_reg <= {SIGNEDA, a_in};
            assign a_stage = a_reg;
        end
    endgenerate

    generate
        if (B_CLK < 0) begin : b_bypass
            assign b_stage = {SIGNEDB, b_in};
        end else begin : b_registered
            wire arst = RESETMODE == "ASYNC" && rst[B_RST];
            always @(posedge clk[B_CLK] or posedge arst)
                if (rst[B_RST]) b_reg <= 19'd0;
                else if (ce[B_CE]) b_reg <= {SIGNEDB, b_in};
            assign b_stage = b_reg;
        end
    endgenerate

    generate
        if (C_CLK < 0) begin : c_bypass
            assign c_stage = c_in;
        end else begin : c_registered
            wire arst = RESETMODE == "ASYNC" && rst[C_RST];
            always @(posedge clk[C_CLK] or posedge arst)
                if (rst[C_RST]) c_reg <= 18'd0;
                else if (ce[C_CE]) c_reg <= c_in;
            assign c_stage = c_reg;
        end
    endgenerate

    wire signed_a = a_stage[18], signed_b = b_stage[18];
    wire signed [36:0] a_ext = {{19{signed_a & a_stage[17]}}, a_stage[17:0]};
    wire signed [36:0] b_ext = {{19{signed_b & b_stage[17]}}, b_stage[17:0]};
    wire signed [73:0] product = a_ext * b_ext;
    wire [36:0] result = {signed_a | signed_b, product[35:0]};

    generate
        if (PIPE_CLK < 0) begin : pipe_bypass
            assign pipe_stage = result;
        end else begin : pipe_registered
            wire arst = RESETMODE == "ASYNC" && rst[PIPE_RST];
            always @(posedge clk[PIPE_CLK] or posedge arst)
                if (rst[PIPE_RST]) pipe_reg <= 37'd0;
                else if (ce[PIPE_CE]) pipe_reg <= result;
            assign pipe_stage = pipe_reg;
        end
    endgenerate

    generate
        if (OUT_CLK < 0) begin : out_bypass
            assign out_stage = pipe_stage;
        end else begin : out_registered
            wire arst = RESETMODE == "ASYNC" && rst[OUT_RST];
            always @(posedge clk[OUT_CLK] or posedge arst)
                if (rst[OUT_RST]) out_reg <= 37'd0;
                else if (ce[OUT_CE]) out_reg <= pipe_stage;
            assign out_stage = out_reg;
        end
    endgenerate

    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = out_stage[35:0];
    assign SIGNEDP = out_stage[36];
    assign {SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8, SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0} = a_stage[17:0];
    assign {SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8, SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0} = b_stage[17:0];
    assign {ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0} = a_stage[17:0];
    assign {ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5, ROB4, ROB3, ROB2, ROB1, ROB0} = b_stage[17:0];
    assign {ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6, ROC5, ROC4, ROC3, ROC2, ROC1, ROC0} = c_stage;
endmodule
`default_nettype wire
