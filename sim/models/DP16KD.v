// Behavioural model of the Lattice ECP5 DP16KD block RAM (16 Kbit + parity, two independent ports), written
// for tensornic's post-synthesis simulation (sim/postsynth.py) from the primitive's documented behaviour
// (Lattice TN1264, ECP5 and ECP5-5G Memory Usage Guide). Yosys's ECP5 cell library ships DP16KD only as a
// black box, so a netlist with block RAM needs this model beside the library's cell models.
//
// It models the configurations Yosys's ECP5 memory mapping gives tensornic's SoC, all of which the SoC's
// post-synthesis tests exercise. Storage: 1024 words of 18 bits, each two 9-bit lanes (8 data bits and a
// parity bit). Per port of the true dual-port modes:
//   DATA_WIDTH 18: word AD[13:4]; AD[1:0] enable the writes of lanes 0 ([8:0]) and 1 ([17:9]);
//   DATA_WIDTH 9:  address AD[13:3] (lane AD[3]), data [8:0];
//   DATA_WIDTH 1:  address AD[13:0], data [0], packed into the lanes' 8 data bits (not the parity bits).
// DATA_WIDTH 36 on both ports is the pseudo-dual-port mode (PDPW16KD, as Yosys and nextpnr express it on a
// DP16KD): port A writes 36-bit words {DIB, DIA} at ADA[13:5] with ADA[3:0] enabling lanes 0…3 (9 bits each,
// from DIA[8:0] up), port B reads them at ADB[13:5] onto {DOB, DOA}; word w is 18-bit words 2w and 2w+1.
// A port acts on a rising clock edge when CE is high and CS[2:0] equals CSDECODE; WE selects a write, whose
// output is the data overwritten (WRITEMODE "READBEFOREWRITE"). RST clears the port's output latch (at the
// clock edge, or at once with RESETMODE "ASYNC"). INITVAL_xx holds words 16·xx … 16·xx+15, one per 20-bit
// field (its low 18 bits). REGMODE "OUTREG" adds the output register after a port's latch (one more cycle
// of read latency): it loads on the port's clock when OCE is high and RST clears it like the latch; in the
// pseudo-dual-port mode both halves of the output follow port B (CLKB, OCEB, RSTB) and REGMODE_A must equal
// REGMODE_B (tensornic's rtl/ecp5_ram.py instantiates it so). Any other setting (widths 2 and 4, write
// modes NORMAL and WRITETHROUGH, inverted pin muxes) stops the simulation, so the model never silently
// stands in for a configuration it does not model.
`default_nettype none
/* verilator lint_off MULTIDRIVEN */  // the two ports write the one array from their own clocks
module DP16KD(
    DIA0, DIA1, DIA2, DIA3, DIA4, DIA5, DIA6, DIA7, DIA8, DIA9, DIA10, DIA11, DIA12, DIA13, DIA14, DIA15, DIA16,
    DIA17, ADA0, ADA1, ADA2, ADA3, ADA4, ADA5, ADA6, ADA7, ADA8, ADA9, ADA10, ADA11, ADA12, ADA13, CEA, OCEA, CLKA,
    WEA, RSTA, CSA2, CSA1, CSA0, DIB0, DIB1, DIB2, DIB3, DIB4, DIB5, DIB6, DIB7, DIB8, DIB9, DIB10, DIB11, DIB12,
    DIB13, DIB14, DIB15, DIB16, DIB17, ADB0, ADB1, ADB2, ADB3, ADB4, ADB5, ADB6, ADB7, ADB8, ADB9, ADB10, ADB11,
    ADB12, ADB13, CEB, OCEB, CLKB, WEB, RSTB, CSB2, CSB1, CSB0, DOA0, DOA1, DOA2, DOA3, DOA4, DOA5, DOA6, DOA7,
    DOA8, DOA9, DOA10, DOA11, DOA12, DOA13, DOA14, DOA15, DOA16, DOA17, DOB0, DOB1, DOB2, DOB3, DOB4, DOB5, DOB6,
    DOB7, DOB8, DOB9, DOB10, DOB11, DOB12, DOB13, DOB14, DOB15, DOB16, DOB17);
    input wire
        DIA0, DIA1, DIA2, DIA3, DIA4, DIA5, DIA6, DIA7, DIA8, DIA9, DIA10, DIA11, DIA12, DIA13, DIA14, DIA15,
        DIA16, DIA17, ADA0, ADA1, ADA2, ADA3, ADA4, ADA5, ADA6, ADA7, ADA8, ADA9, ADA10, ADA11, ADA12, ADA13, CEA,
        OCEA, CLKA, WEA, RSTA, CSA2, CSA1, CSA0, DIB0, DIB1, DIB2, DIB3, DIB4, DIB5, DIB6, DIB7, DIB8, DIB9, DIB10,
        DIB11, DIB12, DIB13, DIB14, DIB15, DIB16, DIB17, ADB0, ADB1, ADB2, ADB3, ADB4, ADB5, ADB6, ADB7, ADB8,
        ADB9, ADB10, ADB11, ADB12, ADB13, CEB, OCEB, CLKB, WEB, RSTB, CSB2, CSB1, CSB0;
    output wire
        DOA0, DOA1, DOA2, DOA3, DOA4, DOA5, DOA6, DOA7, DOA8, DOA9, DOA10, DOA11, DOA12, DOA13, DOA14, DOA15,
        DOA16, DOA17, DOB0, DOB1, DOB2, DOB3, DOB4, DOB5, DOB6, DOB7, DOB8, DOB9, DOB10, DOB11, DOB12, DOB13,
        DOB14, DOB15, DOB16, DOB17;

    parameter DATA_WIDTH_A = 18;
    parameter DATA_WIDTH_B = 18;
    parameter REGMODE_A = "NOREG";
    parameter REGMODE_B = "NOREG";
    parameter RESETMODE = "SYNC";
    parameter ASYNC_RESET_RELEASE = "SYNC";
    parameter CSDECODE_A = "0b000";
    parameter CSDECODE_B = "0b000";
    parameter WRITEMODE_A = "NORMAL";
    parameter WRITEMODE_B = "NORMAL";
    parameter CLKAMUX = "CLKA";
    parameter CLKBMUX = "CLKB";
    parameter CEAMUX = "CEA";
    parameter CEBMUX = "CEB";
    parameter WEAMUX = "WEA";
    parameter WEBMUX = "WEB";
    parameter RSTAMUX = "RSTA";
    parameter RSTBMUX = "RSTB";
    parameter OCEAMUX = "OCEA";
    parameter OCEBMUX = "OCEB";
    parameter GSR = "ENABLED";
    parameter WID = 0;
    parameter INIT_DATA = "STATIC";
    parameter [319:0] INITVAL_00 = 320'h0;
    parameter [319:0] INITVAL_01 = 320'h0;
    parameter [319:0] INITVAL_02 = 320'h0;
    parameter [319:0] INITVAL_03 = 320'h0;
    parameter [319:0] INITVAL_04 = 320'h0;
    parameter [319:0] INITVAL_05 = 320'h0;
    parameter [319:0] INITVAL_06 = 320'h0;
    parameter [319:0] INITVAL_07 = 320'h0;
    parameter [319:0] INITVAL_08 = 320'h0;
    parameter [319:0] INITVAL_09 = 320'h0;
    parameter [319:0] INITVAL_0A = 320'h0;
    parameter [319:0] INITVAL_0B = 320'h0;
    parameter [319:0] INITVAL_0C = 320'h0;
    parameter [319:0] INITVAL_0D = 320'h0;
    parameter [319:0] INITVAL_0E = 320'h0;
    parameter [319:0] INITVAL_0F = 320'h0;
    parameter [319:0] INITVAL_10 = 320'h0;
    parameter [319:0] INITVAL_11 = 320'h0;
    parameter [319:0] INITVAL_12 = 320'h0;
    parameter [319:0] INITVAL_13 = 320'h0;
    parameter [319:0] INITVAL_14 = 320'h0;
    parameter [319:0] INITVAL_15 = 320'h0;
    parameter [319:0] INITVAL_16 = 320'h0;
    parameter [319:0] INITVAL_17 = 320'h0;
    parameter [319:0] INITVAL_18 = 320'h0;
    parameter [319:0] INITVAL_19 = 320'h0;
    parameter [319:0] INITVAL_1A = 320'h0;
    parameter [319:0] INITVAL_1B = 320'h0;
    parameter [319:0] INITVAL_1C = 320'h0;
    parameter [319:0] INITVAL_1D = 320'h0;
    parameter [319:0] INITVAL_1E = 320'h0;
    parameter [319:0] INITVAL_1F = 320'h0;
    parameter [319:0] INITVAL_20 = 320'h0;
    parameter [319:0] INITVAL_21 = 320'h0;
    parameter [319:0] INITVAL_22 = 320'h0;
    parameter [319:0] INITVAL_23 = 320'h0;
    parameter [319:0] INITVAL_24 = 320'h0;
    parameter [319:0] INITVAL_25 = 320'h0;
    parameter [319:0] INITVAL_26 = 320'h0;
    parameter [319:0] INITVAL_27 = 320'h0;
    parameter [319:0] INITVAL_28 = 320'h0;
    parameter [319:0] INITVAL_29 = 320'h0;
    parameter [319:0] INITVAL_2A = 320'h0;
    parameter [319:0] INITVAL_2B = 320'h0;
    parameter [319:0] INITVAL_2C = 320'h0;
    parameter [319:0] INITVAL_2D = 320'h0;
    parameter [319:0] INITVAL_2E = 320'h0;
    parameter [319:0] INITVAL_2F = 320'h0;
    parameter [319:0] INITVAL_30 = 320'h0;
    parameter [319:0] INITVAL_31 = 320'h0;
    parameter [319:0] INITVAL_32 = 320'h0;
    parameter [319:0] INITVAL_33 = 320'h0;
    parameter [319:0] INITVAL_34 = 320'h0;
    parameter [319:0] INITVAL_35 = 320'h0;
    parameter [319:0] INITVAL_36 = 320'h0;
    parameter [319:0] INITVAL_37 = 320'h0;
    parameter [319:0] INITVAL_38 = 320'h0;
    parameter [319:0] INITVAL_39 = 320'h0;
    parameter [319:0] INITVAL_3A = 320'h0;
    parameter [319:0] INITVAL_3B = 320'h0;
    parameter [319:0] INITVAL_3C = 320'h0;
    parameter [319:0] INITVAL_3D = 320'h0;
    parameter [319:0] INITVAL_3E = 320'h0;
    parameter [319:0] INITVAL_3F = 320'h0;

    function automatic bit width_ok(input integer width);
        width_ok = width == 1 || width == 9 || width == 18;
    endfunction

    localparam bit PDP = DATA_WIDTH_A == 36 && DATA_WIDTH_B == 36;

    // The write mode of a true dual-port port (the pseudo-dual-port write port reads nothing).
    function automatic bit mode_ok(input [8*15-1:0] mode);
        mode_ok = PDP || mode == "READBEFOREWRITE";
    endfunction

    function automatic bit regmode_ok(input [8*6-1:0] mode);
        regmode_ok = mode == "NOREG" || mode == "OUTREG";
    endfunction

    // "0bxyz" → 3'bxyz: the low bits of the ASCII digits.
    function automatic [2:0] csdecode(input [8*5-1:0] text);
        csdecode = {text[16], text[8], text[0]};
    endfunction

    initial begin
        if (!PDP && (!width_ok(DATA_WIDTH_A) || !width_ok(DATA_WIDTH_B)) || !mode_ok(WRITEMODE_A) || !mode_ok(WRITEMODE_B) ||
            !regmode_ok(REGMODE_A) || !regmode_ok(REGMODE_B) || (PDP && REGMODE_A != REGMODE_B) ||
            (RESETMODE != "SYNC" && RESETMODE != "ASYNC") ||
            CLKAMUX != "CLKA" || CLKBMUX != "CLKB" || CEAMUX != "CEA" || CEBMUX != "CEB" ||
            WEAMUX != "WEA" || WEBMUX != "WEB" || RSTAMUX != "RSTA" || RSTBMUX != "RSTB" ||
            OCEAMUX != "OCEA" || OCEBMUX != "OCEB") begin
            $display("DP16KD model: unsupported configuration");
            $finish;
        end
    end

    reg [17:0] mem [0:1023];
    integer init_i;
    initial begin
        for (init_i = 0; init_i < 16; init_i = init_i + 1) begin
            mem[0 + init_i] = INITVAL_00[20 * init_i +: 18];
            mem[16 + init_i] = INITVAL_01[20 * init_i +: 18];
            mem[32 + init_i] = INITVAL_02[20 * init_i +: 18];
            mem[48 + init_i] = INITVAL_03[20 * init_i +: 18];
            mem[64 + init_i] = INITVAL_04[20 * init_i +: 18];
            mem[80 + init_i] = INITVAL_05[20 * init_i +: 18];
            mem[96 + init_i] = INITVAL_06[20 * init_i +: 18];
            mem[112 + init_i] = INITVAL_07[20 * init_i +: 18];
            mem[128 + init_i] = INITVAL_08[20 * init_i +: 18];
            mem[144 + init_i] = INITVAL_09[20 * init_i +: 18];
            mem[160 + init_i] = INITVAL_0A[20 * init_i +: 18];
            mem[176 + init_i] = INITVAL_0B[20 * init_i +: 18];
            mem[192 + init_i] = INITVAL_0C[20 * init_i +: 18];
            mem[208 + init_i] = INITVAL_0D[20 * init_i +: 18];
            mem[224 + init_i] = INITVAL_0E[20 * init_i +: 18];
            mem[240 + init_i] = INITVAL_0F[20 * init_i +: 18];
            mem[256 + init_i] = INITVAL_10[20 * init_i +: 18];
            mem[272 + init_i] = INITVAL_11[20 * init_i +: 18];
            mem[288 + init_i] = INITVAL_12[20 * init_i +: 18];
            mem[304 + init_i] = INITVAL_13[20 * init_i +: 18];
            mem[320 + init_i] = INITVAL_14[20 * init_i +: 18];
            mem[336 + init_i] = INITVAL_15[20 * init_i +: 18];
            mem[352 + init_i] = INITVAL_16[20 * init_i +: 18];
            mem[368 + init_i] = INITVAL_17[20 * init_i +: 18];
            mem[384 + init_i] = INITVAL_18[20 * init_i +: 18];
            mem[400 + init_i] = INITVAL_19[20 * init_i +: 18];
            mem[416 + init_i] = INITVAL_1A[20 * init_i +: 18];
            mem[432 + init_i] = INITVAL_1B[20 * init_i +: 18];
            mem[448 + init_i] = INITVAL_1C[20 * init_i +: 18];
            mem[464 + init_i] = INITVAL_1D[20 * init_i +: 18];
            mem[480 + init_i] = INITVAL_1E[20 * init_i +: 18];
            mem[496 + init_i] = INITVAL_1F[20 * init_i +: 18];
            mem[512 + init_i] = INITVAL_20[20 * init_i +: 18];
            mem[528 + init_i] = INITVAL_21[20 * init_i +: 18];
            mem[544 + init_i] = INITVAL_22[20 * init_i +: 18];
            mem[560 + init_i] = INITVAL_23[20 * init_i +: 18];
            mem[576 + init_i] = INITVAL_24[20 * init_i +: 18];
            mem[592 + init_i] = INITVAL_25[20 * init_i +: 18];
            mem[608 + init_i] = INITVAL_26[20 * init_i +: 18];
            mem[624 + init_i] = INITVAL_27[20 * init_i +: 18];
            mem[640 + init_i] = INITVAL_28[20 * init_i +: 18];
            mem[656 + init_i] = INITVAL_29[20 * init_i +: 18];
            mem[672 + init_i] = INITVAL_2A[20 * init_i +: 18];
            mem[688 + init_i] = INITVAL_2B[20 * init_i +: 18];
            mem[704 + init_i] = INITVAL_2C[20 * init_i +: 18];
            mem[720 + init_i] = INITVAL_2D[20 * init_i +: 18];
            mem[736 + init_i] = INITVAL_2E[20 * init_i +: 18];
            mem[752 + init_i] = INITVAL_2F[20 * init_i +: 18];
            mem[768 + init_i] = INITVAL_30[20 * init_i +: 18];
            mem[784 + init_i] = INITVAL_31[20 * init_i +: 18];
            mem[800 + init_i] = INITVAL_32[20 * init_i +: 18];
            mem[816 + init_i] = INITVAL_33[20 * init_i +: 18];
            mem[832 + init_i] = INITVAL_34[20 * init_i +: 18];
            mem[848 + init_i] = INITVAL_35[20 * init_i +: 18];
            mem[864 + init_i] = INITVAL_36[20 * init_i +: 18];
            mem[880 + init_i] = INITVAL_37[20 * init_i +: 18];
            mem[896 + init_i] = INITVAL_38[20 * init_i +: 18];
            mem[912 + init_i] = INITVAL_39[20 * init_i +: 18];
            mem[928 + init_i] = INITVAL_3A[20 * init_i +: 18];
            mem[944 + init_i] = INITVAL_3B[20 * init_i +: 18];
            mem[960 + init_i] = INITVAL_3C[20 * init_i +: 18];
            mem[976 + init_i] = INITVAL_3D[20 * init_i +: 18];
            mem[992 + init_i] = INITVAL_3E[20 * init_i +: 18];
            mem[1008 + init_i] = INITVAL_3F[20 * init_i +: 18];
        end
    end

    // Where a port's element sits in its 18-bit word, and how many bits it has.
    function automatic [4:0] element_bit(input integer width, input [13:0] ad);
        integer index;
        begin
            if (width == 18) element_bit = 5'd0;
            else if (width == 9) element_bit = ad[3] ? 5'd9 : 5'd0;
            else begin
                index = ad[3:0];                                     // 0…15 over the word's data bits
                element_bit = 5'((index / 8) * 9 + index % 8);
            end
        end
    endfunction

    function automatic [17:0] element_mask(input integer width);
        element_mask = width == 18 ? 18'h3FFFF : 18'((1 << width) - 1);
    endfunction

    // ---- port A ----
    wire [17:0] di_a = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
    wire [13:0] ad_a = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
    wire sel_a = CEA && {CSA2, CSA1, CSA0} == csdecode(CSDECODE_A);
    wire [9:0] word_a = ad_a[13:4];
    wire [4:0] bit_a = element_bit(DATA_WIDTH_A, ad_a);
    wire [17:0] mask_a = DATA_WIDTH_A == 18 ? {{9{ad_a[1]}}, {9{ad_a[0]}}} : element_mask(DATA_WIDTH_A) << bit_a;
    wire [17:0] old_a = mem[word_a];
    wire [17:0] new_a = (old_a & ~mask_a) | ((di_a << bit_a) & mask_a);
    wire [17:0] read_a = (old_a >> bit_a) & element_mask(DATA_WIDTH_A);
    wire arst_a = RESETMODE == "ASYNC" && RSTA;
    reg [17:0] latch_a = 18'd0;
    always @(posedge CLKA or posedge arst_a) begin
        if (RSTA) begin
            latch_a <= 18'd0;
        end else if (sel_a && !PDP) begin
            if (WEA) mem[word_a] <= new_a;
            latch_a <= read_a;                                   // read before write
        end
    end

    // ---- port B ----
    wire [17:0] di_b = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
    wire [13:0] ad_b = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};
    wire sel_b = CEB && {CSB2, CSB1, CSB0} == csdecode(CSDECODE_B);
    wire [9:0] word_b = ad_b[13:4];
    wire [4:0] bit_b = element_bit(DATA_WIDTH_B, ad_b);
    wire [17:0] mask_b = DATA_WIDTH_B == 18 ? {{9{ad_b[1]}}, {9{ad_b[0]}}} : element_mask(DATA_WIDTH_B) << bit_b;
    wire [17:0] old_b = mem[word_b];
    wire [17:0] new_b = (old_b & ~mask_b) | ((di_b << bit_b) & mask_b);
    wire [17:0] read_b = (old_b >> bit_b) & element_mask(DATA_WIDTH_B);
    wire arst_b = RESETMODE == "ASYNC" && RSTB;
    reg [17:0] latch_b = 18'd0;
    always @(posedge CLKB or posedge arst_b) begin
        if (RSTB) begin
            latch_b <= 18'd0;
        end else if (sel_b && !PDP) begin
            if (WEB) mem[word_b] <= new_b;
            latch_b <= read_b;                                   // read before write
        end
    end

    // ---- pseudo-dual-port mode: A writes, B reads, 36 bits ----
    wire [8:0] pdp_wword = ad_a[13:5], pdp_rword = ad_b[13:5];
    wire [35:0] pdp_mask = {{9{ad_a[3]}}, {9{ad_a[2]}}, {9{ad_a[1]}}, {9{ad_a[0]}}};
    wire [35:0] pdp_old = {mem[{pdp_wword, 1'b1}], mem[{pdp_wword, 1'b0}]};
    wire [35:0] pdp_new = (pdp_old & ~pdp_mask) | ({di_b, di_a} & pdp_mask);
    reg [35:0] pdp_latch = 36'd0;
    always @(posedge CLKA) begin
        if (PDP && sel_a && WEA) begin
            mem[{pdp_wword, 1'b0}] <= pdp_new[17:0];
            mem[{pdp_wword, 1'b1}] <= pdp_new[35:18];
        end
    end
    always @(posedge CLKB or posedge arst_b) begin
        if (RSTB) pdp_latch <= 36'd0;
        else if (PDP && sel_b) pdp_latch <= {mem[{pdp_rword, 1'b1}], mem[{pdp_rword, 1'b0}]};
    end

    // ---- output registers (REGMODE "OUTREG") ----
    reg [17:0] outreg_a = 18'd0, outreg_b = 18'd0;
    reg [35:0] pdp_outreg = 36'd0;
    always @(posedge CLKA or posedge arst_a) begin
        if (RSTA) outreg_a <= 18'd0;
        else if (OCEA) outreg_a <= latch_a;
    end
    always @(posedge CLKB or posedge arst_b) begin
        if (RSTB) begin
            outreg_b <= 18'd0;
            pdp_outreg <= 36'd0;
        end else if (OCEB) begin
            outreg_b <= latch_b;
            pdp_outreg <= pdp_latch;
        end
    end
    wire [17:0] out_a = REGMODE_A == "OUTREG" ? outreg_a : latch_a;
    wire [17:0] out_b = REGMODE_B == "OUTREG" ? outreg_b : latch_b;
    wire [35:0] out_pdp = REGMODE_B == "OUTREG" ? pdp_outreg : pdp_latch;

    assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = PDP ? out_pdp[17:0] : out_a;
    assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = PDP ? out_pdp[35:18] : out_b;

endmodule
/* verilator lint_on MULTIDRIVEN */
`default_nettype wire
