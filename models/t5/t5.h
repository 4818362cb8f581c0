/* The umT5 encoder of Wan2.1 (wan/modules/t5.py, T5Encoder with shared_pos=False), fp32 activations.
 *
 * x = token_embedding[ids] (no scaling, no absolute positions); per block: x += o(attn(norm1(x))) with
 * attn = softmax(q k^T + bias) v per head (no 1/sqrt(d) scaling), bias = the block's own relative position table
 * [32 buckets][heads] at bucket(key - query); x += fc2(gelu_tanh(gate(norm2(x))) * fc1(norm2(x))); then a final
 * norm. Norms are T5 RMSNorms (no mean, no bias, eps 1e-6). No biases anywhere.
 *
 * Weights come from safetensors (one file, or every *.safetensors in a folder: sharded checkpoints), with the
 * official names (token_embedding.weight, blocks.N.attn.q.weight, blocks.N.ffn.gate.0.weight, ...) or the Hugging
 * Face UMT5 names (shared.weight, encoder.block.N.layer.0.SelfAttention.q.weight, ...). F32, F16 and BF16 matrices
 * stay in the memory-mapped files as stored and are converted a block of rows at a time into a bounded scratch for
 * each matrix product, so umT5-XXL in BF16 needs ~11.4 GB of mapped weights plus a few hundred MB. All sizes are
 * read from the tensor shapes. Padding never enters: a prompt of n tokens is encoded as n tokens, which equals the
 * official padded-and-masked computation on those n positions (masked keys get exp(-inf) = 0 weight). */
#ifndef CACHEBENCH_T5_H
#define CACHEBENCH_T5_H

#include <stddef.h>

#include "core/error.h"
#include "models/safetensors.h"

#define T5_NORM_EPS 1e-6f
#define T5_MAX_DISTANCE 128

typedef struct {
    int vocab, dim, dim_attn, dim_ffn, heads, layers, buckets;
} T5Config;

/* A [rows][cols] matrix as stored (row-major, PyTorch Linear layout [out][in]). */
typedef struct {
    StDtype dtype;
    const void *data;
    int rows, cols;
} T5Matrix;

typedef struct {
    T5Matrix q, k, v, o, gate, fc1, fc2;
    float *norm1, *norm2;   /* [dim] */
    float *rel_bias;        /* [buckets][heads] */
} T5Layer;

typedef struct {
    T5Config cfg;
    int official_names;     /* 1: wan's names, 0: Hugging Face UMT5 names */
    StFile *files;
    int num_files;
    T5Matrix embedding;     /* [vocab][dim] */
    T5Layer *layers;
    float *final_norm;      /* [dim] */
} T5Encoder;

/* path: a .safetensors file or a folder of them. Errors name the file and tensor (missing, wrong shape, dtype). */
int t5_encoder_open(T5Encoder *enc, const char *path, Error *err);
void t5_encoder_close(T5Encoder *enc);

/* out[n][dim] = the token embeddings of ids[0..n) in fp32 (the encoder's input). Ids must be < vocab (checked). */
int t5_embed(const T5Encoder *enc, const int *ids, int n, float *out, Error *err);

/* out[n][dim] = the encoder output for ids[0..n). Ids must be < vocab (checked). */
int t5_encode(const T5Encoder *enc, const int *ids, int n, float *out, Error *err);

/* Bidirectional T5 bucket of rel = key - query, as T5RelativeEmbedding._relative_position_bucket computes it in
 * float32 (half the buckets per direction, exact below a quarter, logarithmic up to max_distance). */
int t5_relative_bucket(int rel, int num_buckets, int max_distance);

/* out[M][N] = in[M][K] . W[N][K]^T for a stored matrix of any supported dtype; BF16/F16 rows are converted in blocks
 * into scratch (t5_matmul_scratch_floats(K) floats, enough for any K' <= K). */
size_t t5_matmul_scratch_floats(int K);
void t5_matmul(float *out, const float *in, const T5Matrix *w, int M, float *scratch);

#endif
