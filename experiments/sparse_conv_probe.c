// Would an event-driven (sparse-input) convolution beat the dense one here? A standalone probe.
//
//   gcc -O3 -march=native -fopenmp experiments/sparse_conv_probe.c -o /tmp/sparse_conv_probe -lm
//   /tmp/sparse_conv_probe N H C D DENSITY        e.g. 400 32 64 64 0.22 (conv2, batch 16, T 25)
//
// A 3x3 'SAME' convolution of an NHWC input that is 1 with probability DENSITY and 0 otherwise
// (spikes), C -> D channels, H x H pixels, N = T * B samples: the forward and the weight gradient
// computed from the input's nonzeros only, on all cores (OpenMP), AVX-512. Prints one JSON line:
// the time to list each pixel's active channels (compress_ms, shared by both), the forward and
// weight-gradient times (fwd_ms, dw_ms; compare conv_roofline.py's dense figures at the same
// shape), and their errors against a float64 sum at random entries. Not part of the library: the
// library's convolutions are XLA's (see README, Performance).
//
// Forward, output-stationary: y[p, :] = sum over taps and active channels c of the input pixel
// p + tap of w[tap, c, :], accumulated in registers 64 output channels at a time.
// Weight gradient: dw[tap, c, :] += dy[p, :] for every active (p + tap, c), into one copy of dw
// per thread (64 output channels at a time, so that the copy stays in cache), then summed.
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <omp.h>
#include <math.h>

static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+1e-9*t.tv_nsec;}

// Per-pixel lists of active channels: idx[p*C + k] for k < cnt[p]
static void compress(const float* x, int P, int C, uint16_t* idx, uint16_t* cnt){
  #pragma omp parallel for schedule(static)
  for (int p=0;p<P;p++){ const float* xp=x+(size_t)p*C; uint16_t* ip=idx+(size_t)p*C; int k=0;
    for(int c=0;c<C;c+=16){ __m512 v=_mm512_loadu_ps(xp+c); __mmask16 m=_mm512_cmpneq_ps_mask(v,_mm512_setzero_ps());
      while(m){ int b=__builtin_ctz(m); ip[k++]=c+b; m&=m-1; } }
    cnt[p]=k; }
}

// w: [9][C][D] ; y: [N,H,W,D]
#define DB 64
static void conv_fwd(const uint16_t* idx, const uint16_t* cnt, const float* w, float* y, int N,int H,int W,int C,int D){
  #pragma omp parallel for collapse(2) schedule(dynamic,4)
  for (int n=0;n<N;n++) for (int yy=0;yy<H;yy++) for (int db=0; db<D; db+=DB) for (int xx=0;xx<W;xx++){
    __m512 a0=_mm512_setzero_ps(),a1=a0,a2=a0,a3=a0;
    for(int dy=-1;dy<=1;dy++){int iy=yy+dy; if(iy<0||iy>=H)continue;
      for(int dx=-1;dx<=1;dx++){int ix=xx+dx; if(ix<0||ix>=W)continue;
        size_t p=((size_t)n*H+iy)*W+ix; const uint16_t* ip=idx+p*C; int k=cnt[p];
        const float* wt=w+(size_t)((dy+1)*3+(dx+1))*C*D+db;
        for(int j=0;j<k;j++){ const float* r=wt+(size_t)ip[j]*D;
          a0=_mm512_add_ps(a0,_mm512_loadu_ps(r)); a1=_mm512_add_ps(a1,_mm512_loadu_ps(r+16));
          a2=_mm512_add_ps(a2,_mm512_loadu_ps(r+32)); a3=_mm512_add_ps(a3,_mm512_loadu_ps(r+48)); } } }
    float* o=y+(((size_t)n*H+yy)*W+xx)*D+db;
    _mm512_storeu_ps(o,a0);_mm512_storeu_ps(o+16,a1);_mm512_storeu_ps(o+32,a2);_mm512_storeu_ps(o+48,a3);
  }
}

// dw[9][C][D] = sum_p sum_tap x[p+tap][c] * dy[p][:]  (sparse in x), per-thread copies reduced
static void conv_dw(const uint16_t* idx, const uint16_t* cnt, const float* dy, float* dw, float* scratch,
                    int N,int H,int W,int C,int D){
  size_t WS=(size_t)9*C*D;
  #pragma omp parallel
  { int t=omp_get_thread_num(), T=omp_get_num_threads(); float* acc=scratch+(size_t)t*WS; memset(acc,0,WS*4);
    for (int db=0; db<D; db+=DB){
      #pragma omp for schedule(static) nowait
      for (int n=0;n<N;n++) for (int yy=0;yy<H;yy++) for (int xx=0;xx<W;xx++){
        const float* g=dy+(((size_t)n*H+yy)*W+xx)*D+db;
        __m512 g0=_mm512_loadu_ps(g),g1=_mm512_loadu_ps(g+16),g2=_mm512_loadu_ps(g+32),g3=_mm512_loadu_ps(g+48);
        for(int dy_=-1;dy_<=1;dy_++){int iy=yy+dy_; if(iy<0||iy>=H)continue;
          for(int dx=-1;dx<=1;dx++){int ix=xx+dx; if(ix<0||ix>=W)continue;
            size_t p=((size_t)n*H+iy)*W+ix; const uint16_t* ip=idx+p*C; int k=cnt[p];
            float* at=acc+(size_t)((dy_+1)*3+(dx+1))*C*D+db;
            for(int j=0;j<k;j++){ float* r=at+(size_t)ip[j]*D;
              _mm512_storeu_ps(r,_mm512_add_ps(_mm512_loadu_ps(r),g0)); _mm512_storeu_ps(r+16,_mm512_add_ps(_mm512_loadu_ps(r+16),g1));
              _mm512_storeu_ps(r+32,_mm512_add_ps(_mm512_loadu_ps(r+32),g2)); _mm512_storeu_ps(r+48,_mm512_add_ps(_mm512_loadu_ps(r+48),g3)); } } } }
    }
    #pragma omp barrier
    #pragma omp for schedule(static)
    for (size_t i=0;i<WS;i++){ float s=0; for(int u=0;u<T;u++) s+=scratch[(size_t)u*WS+i]; dw[i]=s; }
  }
}

int main(int argc,char**argv){
  if(argc!=6||atoi(argv[1])<1||atoi(argv[2])<1||atoi(argv[3])%16||atoi(argv[4])%64||atof(argv[5])<0||atof(argv[5])>1){
    fprintf(stderr,"usage: %s N H C D DENSITY (C a multiple of 16, D of 64, 0 <= DENSITY <= 1)\n",argv[0]); return 2; }
  int N=atoi(argv[1]),H=atoi(argv[2]),C=atoi(argv[3]),D=atoi(argv[4]); double dens=atof(argv[5]); int W=H;
  size_t P=(size_t)N*H*W;
  float* x=aligned_alloc(64,P*C*4); float* w=aligned_alloc(64,(size_t)9*C*D*4); float* y=aligned_alloc(64,P*D*4);
  uint16_t* idx=aligned_alloc(64,P*C*2); uint16_t* cnt=aligned_alloc(64,P*2);
  srand(1); for(size_t i=0;i<P*C;i++) x[i]=(rand()/(double)RAND_MAX)<dens; for(size_t i=0;i<(size_t)9*C*D;i++) w[i]=rand()/(double)RAND_MAX-0.5;
  memset(y,0,P*D*4); memset(idx,0,P*C*2);
  compress(x,P,C,idx,cnt); conv_fwd(idx,cnt,w,y,N,H,W,C,D);
  // check a few outputs
  double maxerr=0; for(int t=0;t<50;t++){ int n=rand()%N,yy=rand()%H,xx=rand()%W,d=rand()%D; double s=0;
    for(int dy=-1;dy<=1;dy++)for(int dx=-1;dx<=1;dx++){int iy=yy+dy,ix=xx+dx; if(iy<0||iy>=H||ix<0||ix>=W)continue;
      for(int c=0;c<C;c++) s+=x[(((size_t)n*H+iy)*W+ix)*C+c]*w[((size_t)((dy+1)*3+dx+1)*C+c)*D+d];}
    double e=fabs(s-y[(((size_t)n*H+yy)*W+xx)*D+d]); if(e>maxerr)maxerr=e; }
  float* dyv=aligned_alloc(64,P*D*4); for(size_t i=0;i<P*D;i++) dyv[i]=rand()/(double)RAND_MAX-0.5;
  float* dw=aligned_alloc(64,(size_t)9*C*D*4); float* scr=aligned_alloc(64,(size_t)omp_get_max_threads()*9*C*D*4);
  conv_dw(idx,cnt,dyv,dw,scr,N,H,W,C,D);
  double dwerr=0, dwmax=0; for(int t=0;t<20;t++){ int tap=rand()%9,c=rand()%C,d=rand()%D; int ty=tap/3-1,tx=tap%3-1; double s=0;
    for(int n=0;n<N;n++)for(int yy=0;yy<H;yy++)for(int xx=0;xx<W;xx++){int iy=yy+ty,ix=xx+tx; if(iy<0||iy>=H||ix<0||ix>=W)continue;
      s+=x[(((size_t)n*H+iy)*W+ix)*C+c]*dyv[(((size_t)n*H+yy)*W+xx)*D+d];}
    double e=fabs(s-dw[((size_t)tap*C+c)*D+d]); if(e>dwerr)dwerr=e; if(fabs(s)>dwmax)dwmax=fabs(s);}
  int R=5; double t0=now(); for(int r=0;r<R;r++) compress(x,P,C,idx,cnt); double tc=(now()-t0)/R;
  t0=now(); for(int r=0;r<R;r++) conv_fwd(idx,cnt,w,y,N,H,W,C,D); double tf=(now()-t0)/R;
  t0=now(); for(int r=0;r<R;r++) conv_dw(idx,cnt,dyv,dw,scr,N,H,W,C,D); double td=(now()-t0)/R;
  printf("{\"shape\":[%d,%d,%d,%d],\"density\":%.2f,\"compress_ms\":%.1f,\"fwd_ms\":%.1f,\"dw_ms\":%.1f,\"maxerr\":%.2e,\"dw_relerr\":%.2e,\"threads\":%d}\n",N,H,C,D,dens,tc*1e3,tf*1e3,td*1e3,maxerr,dwerr/dwmax,omp_get_max_threads());
}
