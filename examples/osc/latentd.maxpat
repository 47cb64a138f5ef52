{
  "patcher": {
    "appversion": {
      "architecture": "x64",
      "major": 8,
      "minor": 5,
      "modernui": 1,
      "revision": 0
    },
    "boxes": [
      {
        "box": {
          "id": "obj-udpsend",
          "maxclass": "newobj",
          "numinlets": 1,
          "numoutlets": 0,
          "patching_rect": [
            20.0,
            760.0,
            160.0,
            22.0
          ],
          "text": "udpsend 127.0.0.1 7770"
        }
      },
      {
        "box": {
          "id": "obj-comment",
          "maxclass": "comment",
          "numinlets": 1,
          "numoutlets": 0,
          "patching_rect": [
            20.0,
            10.0,
            520.0,
            20.0
          ],
          "text": "latentd knobs. Generated from osc-schema (cargo run -p latentd-osc-schema --example gen); do not edit."
        }
      },
      {
        "box": {
          "id": "obj-num-denoise",
          "maxclass": "flonum",
          "maximum": 1.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            40.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-denoise",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            40.0,
            200.0,
            22.0
          ],
          "text": "/knob/denoise $1"
        }
      },
      {
        "box": {
          "id": "obj-num-sampler",
          "maxclass": "number",
          "maximum": 1.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            70.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-sampler",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            70.0,
            200.0,
            22.0
          ],
          "text": "/knob/sampler $1"
        }
      },
      {
        "box": {
          "id": "obj-num-sde_amp",
          "maxclass": "flonum",
          "maximum": 1.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            100.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-sde_amp",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            100.0,
            200.0,
            22.0
          ],
          "text": "/knob/sde_amp $1"
        }
      },
      {
        "box": {
          "id": "obj-num-periodicity",
          "maxclass": "flonum",
          "maximum": 12.5,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            130.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-periodicity",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            130.0,
            200.0,
            22.0
          ],
          "text": "/knob/periodicity $1"
        }
      },
      {
        "box": {
          "id": "obj-num-seed",
          "maxclass": "number",
          "maximum": 4294967295.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            160.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-seed",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            160.0,
            200.0,
            22.0
          ],
          "text": "/knob/seed $1"
        }
      },
      {
        "box": {
          "id": "obj-num-shift",
          "maxclass": "flonum",
          "maximum": 6.0,
          "minimum": 1.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            190.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-shift",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            190.0,
            200.0,
            22.0
          ],
          "text": "/knob/shift $1"
        }
      },
      {
        "box": {
          "id": "obj-num-guidance",
          "maxclass": "flonum",
          "maximum": 15.0,
          "minimum": 1.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            220.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-guidance",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            220.0,
            200.0,
            22.0
          ],
          "text": "/knob/guidance $1"
        }
      },
      {
        "box": {
          "id": "obj-num-cfg_rescale",
          "maxclass": "flonum",
          "maximum": 1.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            250.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-cfg_rescale",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            250.0,
            200.0,
            22.0
          ],
          "text": "/knob/cfg_rescale $1"
        }
      },
      {
        "box": {
          "id": "obj-num-x0_target",
          "maxclass": "flonum",
          "maximum": 1.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            280.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-x0_target",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            280.0,
            200.0,
            22.0
          ],
          "text": "/knob/x0_target $1"
        }
      },
      {
        "box": {
          "id": "obj-num-feedback",
          "maxclass": "flonum",
          "maximum": 1.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            310.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-feedback",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            310.0,
            200.0,
            22.0
          ],
          "text": "/knob/feedback $1"
        }
      },
      {
        "box": {
          "id": "obj-num-feedback_depth",
          "maxclass": "number",
          "maximum": 8.0,
          "minimum": 1.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            340.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-feedback_depth",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            340.0,
            200.0,
            22.0
          ],
          "text": "/knob/feedback_depth $1"
        }
      },
      {
        "box": {
          "id": "obj-num-ch_g0",
          "maxclass": "flonum",
          "maximum": 3.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            370.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-ch_g0",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            370.0,
            200.0,
            22.0
          ],
          "text": "/knob/ch_g0 $1"
        }
      },
      {
        "box": {
          "id": "obj-num-ch_g1",
          "maxclass": "flonum",
          "maximum": 3.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            400.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-ch_g1",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            400.0,
            200.0,
            22.0
          ],
          "text": "/knob/ch_g1 $1"
        }
      },
      {
        "box": {
          "id": "obj-num-ch_g2",
          "maxclass": "flonum",
          "maximum": 3.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            430.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-ch_g2",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            430.0,
            200.0,
            22.0
          ],
          "text": "/knob/ch_g2 $1"
        }
      },
      {
        "box": {
          "id": "obj-num-ch_g3",
          "maxclass": "flonum",
          "maximum": 3.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            460.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-ch_g3",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            460.0,
            200.0,
            22.0
          ],
          "text": "/knob/ch_g3 $1"
        }
      },
      {
        "box": {
          "id": "obj-num-ch_g4",
          "maxclass": "flonum",
          "maximum": 3.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            490.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-ch_g4",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            490.0,
            200.0,
            22.0
          ],
          "text": "/knob/ch_g4 $1"
        }
      },
      {
        "box": {
          "id": "obj-num-ch_g5",
          "maxclass": "flonum",
          "maximum": 3.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            520.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-ch_g5",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            520.0,
            200.0,
            22.0
          ],
          "text": "/knob/ch_g5 $1"
        }
      },
      {
        "box": {
          "id": "obj-num-ch_g6",
          "maxclass": "flonum",
          "maximum": 3.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            550.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-ch_g6",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            550.0,
            200.0,
            22.0
          ],
          "text": "/knob/ch_g6 $1"
        }
      },
      {
        "box": {
          "id": "obj-num-ch_g7",
          "maxclass": "flonum",
          "maximum": 3.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            580.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-ch_g7",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            580.0,
            200.0,
            22.0
          ],
          "text": "/knob/ch_g7 $1"
        }
      },
      {
        "box": {
          "id": "obj-num-steps",
          "maxclass": "number",
          "maximum": 16.0,
          "minimum": 1.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            610.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-steps",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            610.0,
            200.0,
            22.0
          ],
          "text": "/knob/steps $1"
        }
      },
      {
        "box": {
          "id": "obj-num-depth",
          "maxclass": "number",
          "maximum": 8.0,
          "minimum": 1.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            640.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-depth",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            640.0,
            200.0,
            22.0
          ],
          "text": "/knob/depth $1"
        }
      },
      {
        "box": {
          "id": "obj-num-timbre_strength",
          "maxclass": "flonum",
          "maximum": 1.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            670.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-timbre_strength",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            670.0,
            200.0,
            22.0
          ],
          "text": "/knob/timbre_strength $1"
        }
      },
      {
        "box": {
          "id": "obj-num-structure_strength",
          "maxclass": "flonum",
          "maximum": 1.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            700.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-structure_strength",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            700.0,
            200.0,
            22.0
          ],
          "text": "/knob/structure_strength $1"
        }
      },
      {
        "box": {
          "id": "obj-num-prompt_blend",
          "maxclass": "flonum",
          "maximum": 1.0,
          "minimum": 0.0,
          "numinlets": 1,
          "numoutlets": 2,
          "outlettype": [
            "",
            "bang"
          ],
          "parameter_enable": 0,
          "patching_rect": [
            20.0,
            730.0,
            60.0,
            22.0
          ]
        }
      },
      {
        "box": {
          "id": "obj-msg-prompt_blend",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            90.0,
            730.0,
            200.0,
            22.0
          ],
          "text": "/knob/prompt_blend $1"
        }
      },
      {
        "box": {
          "id": "obj-extra-0",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            320.0,
            40.0,
            220.0,
            22.0
          ],
          "text": "/status"
        }
      },
      {
        "box": {
          "id": "obj-extra-1",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            320.0,
            70.0,
            220.0,
            22.0
          ],
          "text": "/version"
        }
      },
      {
        "box": {
          "id": "obj-extra-2",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            320.0,
            100.0,
            220.0,
            22.0
          ],
          "text": "/knobs"
        }
      },
      {
        "box": {
          "id": "obj-extra-3",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            320.0,
            130.0,
            220.0,
            22.0
          ],
          "text": "/prompt \"ambient, felt piano\""
        }
      },
      {
        "box": {
          "id": "obj-extra-4",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            320.0,
            160.0,
            220.0,
            22.0
          ],
          "text": "/transport/play"
        }
      },
      {
        "box": {
          "id": "obj-extra-5",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            320.0,
            190.0,
            220.0,
            22.0
          ],
          "text": "/transport/pause"
        }
      },
      {
        "box": {
          "id": "obj-extra-6",
          "maxclass": "message",
          "numinlets": 2,
          "numoutlets": 1,
          "outlettype": [
            ""
          ],
          "patching_rect": [
            320.0,
            220.0,
            220.0,
            22.0
          ],
          "text": "/loop/clear"
        }
      }
    ],
    "classnamespace": "box",
    "fileversion": 1,
    "lines": [
      {
        "patchline": {
          "destination": [
            "obj-msg-denoise",
            0
          ],
          "source": [
            "obj-num-denoise",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-denoise",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-sampler",
            0
          ],
          "source": [
            "obj-num-sampler",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-sampler",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-sde_amp",
            0
          ],
          "source": [
            "obj-num-sde_amp",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-sde_amp",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-periodicity",
            0
          ],
          "source": [
            "obj-num-periodicity",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-periodicity",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-seed",
            0
          ],
          "source": [
            "obj-num-seed",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-seed",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-shift",
            0
          ],
          "source": [
            "obj-num-shift",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-shift",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-guidance",
            0
          ],
          "source": [
            "obj-num-guidance",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-guidance",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-cfg_rescale",
            0
          ],
          "source": [
            "obj-num-cfg_rescale",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-cfg_rescale",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-x0_target",
            0
          ],
          "source": [
            "obj-num-x0_target",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-x0_target",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-feedback",
            0
          ],
          "source": [
            "obj-num-feedback",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-feedback",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-feedback_depth",
            0
          ],
          "source": [
            "obj-num-feedback_depth",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-feedback_depth",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-ch_g0",
            0
          ],
          "source": [
            "obj-num-ch_g0",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-ch_g0",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-ch_g1",
            0
          ],
          "source": [
            "obj-num-ch_g1",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-ch_g1",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-ch_g2",
            0
          ],
          "source": [
            "obj-num-ch_g2",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-ch_g2",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-ch_g3",
            0
          ],
          "source": [
            "obj-num-ch_g3",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-ch_g3",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-ch_g4",
            0
          ],
          "source": [
            "obj-num-ch_g4",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-ch_g4",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-ch_g5",
            0
          ],
          "source": [
            "obj-num-ch_g5",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-ch_g5",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-ch_g6",
            0
          ],
          "source": [
            "obj-num-ch_g6",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-ch_g6",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-ch_g7",
            0
          ],
          "source": [
            "obj-num-ch_g7",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-ch_g7",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-steps",
            0
          ],
          "source": [
            "obj-num-steps",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-steps",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-depth",
            0
          ],
          "source": [
            "obj-num-depth",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-depth",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-timbre_strength",
            0
          ],
          "source": [
            "obj-num-timbre_strength",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-timbre_strength",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-structure_strength",
            0
          ],
          "source": [
            "obj-num-structure_strength",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-structure_strength",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-msg-prompt_blend",
            0
          ],
          "source": [
            "obj-num-prompt_blend",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-msg-prompt_blend",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-extra-0",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-extra-1",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-extra-2",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-extra-3",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-extra-4",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-extra-5",
            0
          ]
        }
      },
      {
        "patchline": {
          "destination": [
            "obj-udpsend",
            0
          ],
          "source": [
            "obj-extra-6",
            0
          ]
        }
      }
    ],
    "rect": [
      100.0,
      100.0,
      600.0,
      840.0
    ]
  }
}
